"""The admin for prompts: the list (duplicates, evaluation marks) and the import page (a JSONL or
CSV file checked line by line; after an import, the list of exactly what it created). Kept apart
from `labeling.admin` as `evaluation_admin` is: the import flow is a concern of its own."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from labeling.admin import short
from labeling.errors import LabelingError
from labeling.forms import PromptImportForm
from labeling.importers import MAX_BYTES, MAX_LINES, format_for, prompts_import
from labeling.models import Project, Prompt
from labeling.services.demonstrations import prompt_update
from labeling.services.evaluation_prompts import prompts_mark_evaluation


class DuplicateFilter(admin.SimpleListFilter):
    title = "near-duplicate"
    parameter_name = "duplicate"

    def lookups(self, request, model_admin):
        return [("yes", "Flagged"), ("no", "Not flagged")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(duplicate_of__isnull=self.value() == "no")
        return queryset


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "summary", "project", "source", "is_evaluation", "demonstrations_count",
                    "demonstrations_needed", "duplicate_of_id", "author", "created_at"]
    list_filter = ["project", "source", "is_evaluation", DuplicateFilter]
    actions = ["hold_out_for_evaluation", "return_to_training"]
    search_fields = ["text", "=content_hash"]
    list_select_related = ["project", "author"]
    raw_id_fields = ["duplicate_of"]
    readonly_fields = ["project", "turns", "text", "content_hash", "source", "author",
                       "demonstrations_count", "is_evaluation", "created_at"]
    fields = ["project", "text", "turns", "demonstrations_needed", "demonstrations_count",
              "duplicate_of", "content_hash", "source", "author", "is_evaluation", "created_at"]

    def has_add_permission(self, request):
        return False  # prompts come in through import, the API or a labeler's dialogue

    @admin.display(description="prompt")
    def summary(self, obj):
        return short(obj.text)

    @admin.action(description="Hold out for evaluation (never trained on)")
    def hold_out_for_evaluation(self, request, queryset):
        self._mark_evaluation(request, queryset, True)

    @admin.action(description="Return to training (no longer an evaluation prompt)")
    def return_to_training(self, request, queryset):
        self._mark_evaluation(request, queryset, False)

    def _mark_evaluation(self, request, queryset, is_evaluation: bool):
        by_project: dict[int, list[int]] = {}
        for project_id, prompt_id in queryset.values_list("project_id", "id"):
            by_project.setdefault(project_id, []).append(prompt_id)
        changed = sum(
            prompts_mark_evaluation(project=Project.objects.get(pk=project_id), prompt_ids=ids,
                                    is_evaluation=is_evaluation)
            for project_id, ids in by_project.items()
        )
        what = "held out for evaluation" if is_evaluation else "returned to training"
        self.message_user(request, f"{changed} prompt(s) {what}.")

    def get_urls(self):
        view = self.admin_site.admin_view(self.import_view)  # staff login, CSRF, never cached
        return [path("import/", view, name="labeling_prompt_import"), *super().get_urls()]

    def import_view(self, request):
        """Upload a JSONL/CSV file into a project: `prompts_import` checks every line and writes
        all or nothing; a failed import lists each bad line on the page."""
        if not request.user.has_perm("labeling.add_prompt"):
            raise PermissionDenied
        line_errors, status = [], 200
        if request.method == "POST":
            form = PromptImportForm(request.POST, request.FILES)
            status = 400
            if form.is_valid():
                project, upload = form.cleaned_data["project"], form.cleaned_data["file"]
                try:
                    report = prompts_import(
                        project=project, content=upload.read(MAX_BYTES + 1),
                        format=format_for(upload.name), author=request.user,
                        demonstrations_needed=form.cleaned_data["demonstrations_needed"],
                        evaluation_share=form.cleaned_data["evaluation_share"] or 0.0,
                    )
                except LabelingError as exc:
                    self.message_user(request, exc.message, messages.ERROR)
                    line_errors = exc.details.get("errors", [])
                else:
                    self.message_user(request, f"{project.name}: {report.summary()}",
                                      messages.SUCCESS)
                    return HttpResponseRedirect(_imported_url(project, report.prompt_ids))
        else:
            form = PromptImportForm(initial={"project": request.GET.get("project")})
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "title": "Import prompts",
            "form": form, "line_errors": line_errors, "max_mb": MAX_BYTES // 2**20,
            "max_lines": f"{MAX_LINES:,}",
        }
        return TemplateResponse(request, "admin/labeling/prompt/import.html", context,
                                status=status)

    def save_model(self, request, obj, form, change):
        prompt_update(
            prompt=Prompt.objects.get(pk=obj.pk),
            demonstrations_needed=form.cleaned_data["demonstrations_needed"],
            duplicate_of=form.cleaned_data["duplicate_of"],
        )


MAX_IDS_IN_URL = 500


def _imported_url(project, prompt_ids: list[int]) -> str:
    """The prompt list showing exactly the prompts an import created (by id; a large import by
    its id range, which bulk creation keeps contiguous), or the project's prompts if none."""
    changelist = reverse("admin:labeling_prompt_changelist")
    if not prompt_ids:
        return f"{changelist}?project__id__exact={project.pk}"
    if len(prompt_ids) <= MAX_IDS_IN_URL:
        return f"{changelist}?id__in={','.join(map(str, prompt_ids))}"
    return (f"{changelist}?project__id__exact={project.pk}"
            f"&id__gte={min(prompt_ids)}&id__lte={max(prompt_ids)}")
