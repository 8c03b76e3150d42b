"""The Django admin for the labeling tables. Actions and saves call the same services as the UI;
labels (rankings, demonstrations, leases, skips) are read-only here: nobody edits a label."""
import io
import zipfile

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from labeling import exports
from labeling.errors import LabelingError
from labeling.models import (
    Assignment,
    Completion,
    Demonstration,
    ExportSnapshot,
    LabelerExclusion,
    Project,
    Ranking,
    RankingTask,
    Skip,
    TaskCompletion,
)
from labeling.services.exports import export_snapshot_create
from labeling.services.projects import EDITABLE, project_create, project_update
from labeling.services.quality import ranking_task_set_gold
from labeling.services.queue import assignments_release
from labeling.services.ranking_tasks import ranking_tasks_cancel, ranking_tasks_reopen


def short(text, n=80):
    return Truncator(text).chars(n)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _report(modeladmin, request, fn):
    try:
        return fn()
    except LabelingError as exc:
        modeladmin.message_user(request, exc.message, messages.ERROR)


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "k", "overlap", "lease_seconds", "is_active", "prompt_count",
                    "open_tasks", "created_at"]
    list_filter = ["is_active", "k"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    fields = list(EDITABLE)
    actions = ["export_selected", "record_snapshot"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            n_prompts=Count("prompts", distinct=True),
            n_open=Count("ranking_tasks", filter=Q(ranking_tasks__status="open"), distinct=True),
        )

    @admin.display(ordering="n_prompts", description="prompts")
    def prompt_count(self, obj):
        return obj.n_prompts

    @admin.display(ordering="n_open", description="open tasks")
    def open_tasks(self, obj):
        return obj.n_open

    def save_model(self, request, obj, form, change):
        values = {name: form.cleaned_data[name] for name in EDITABLE if name in form.cleaned_data}
        if change:
            changed = {k: values[k] for k in form.changed_data if k in values}
            project_update(project=Project.objects.get(pk=obj.pk), **changed)
        else:
            values.pop("is_active", None)
            obj.pk = project_create(**values).pk

    @admin.action(description="Export selected projects (JSONL, as of now, zipped)")
    def export_selected(self, request, queryset):
        buffer = io.BytesIO()
        as_of = timezone.now()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for project in queryset:
                snapshot = export_snapshot_create(project=project, as_of=as_of,
                                                  created_by=request.user)
                for kind in exports.KINDS:
                    lines = exports.jsonl_lines(
                        exports.records(kind, project=project, as_of=snapshot.as_of)
                    )
                    archive.writestr(f"{project.slug}/{kind}.jsonl", "".join(lines))
                archive.writestr(f"{project.slug}/snapshot.txt", snapshot.snapshot_id + "\n")
        response = HttpResponse(buffer.getvalue(), content_type="application/zip")
        stamp = as_of.strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="labels-{stamp}.zip"'
        return response

    @admin.action(description="Record a dataset snapshot (counts and digests) as of now")
    def record_snapshot(self, request, queryset):
        for project in queryset:
            snapshot = export_snapshot_create(project=project, created_by=request.user)
            self.message_user(request, f"{snapshot.snapshot_id}: {snapshot.counts}")


@admin.register(Completion)
class CompletionAdmin(ReadOnlyAdmin):
    list_display = ["id", "summary", "model_label", "model_version_id", "prompt_id", "created_at"]
    list_filter = ["model_label", "prompt__project"]
    search_fields = ["text", "model_label"]

    @admin.display(description="text")
    def summary(self, obj):
        return short(obj.text)


class TaskCompletionInline(admin.TabularInline):
    model = TaskCompletion
    fields = ["position", "completion", "model_label", "text"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["position"]

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("completion")

    @admin.display(description="model")
    def model_label(self, obj):
        return obj.completion.model_label

    @admin.display(description="text")
    def text(self, obj):
        return short(obj.completion.text, 200)


class GoldFilter(admin.SimpleListFilter):
    title = "gold"
    parameter_name = "gold"

    def lookups(self, request, model_admin):
        return [("yes", "Gold tasks"), ("no", "Ordinary tasks")]

    def queryset(self, request, queryset):
        gold = Q(gold_best__isnull=False) | Q(gold_worst__isnull=False)
        if self.value() == "yes":
            return queryset.filter(gold)
        if self.value() == "no":
            return queryset.exclude(gold)
        return queryset


@admin.register(RankingTask)
class RankingTaskAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "prompt_summary", "status", "rankings_count",
                    "rankings_needed", "priority", "batch_key", "gold", "created_at"]
    list_filter = ["status", "project", "batch_key", GoldFilter]
    search_fields = ["prompt__text", "=batch_key"]
    list_select_related = ["project", "prompt"]
    readonly_fields = ["project", "prompt", "status", "rankings_count", "rankings_needed",
                       "priority", "batch_key", "created_at"]
    inlines = [TaskCompletionInline]
    actions = ["reopen", "cancel", "export_selected"]

    def has_add_permission(self, request):
        return False  # tasks come from ranking_tasks_create (training side, API)

    def has_change_permission(self, request, obj=None):
        return obj is None  # the list (and its actions), not the form

    @admin.display(description="prompt")
    def prompt_summary(self, obj):
        return short(obj.prompt.text)

    @admin.display(description="gold")
    def gold(self, obj):
        url = reverse("admin:labeling_rankingtask_gold", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, "gold ✓" if obj.is_gold else "make gold")

    def get_urls(self):
        view = self.admin_site.admin_view(self.gold_view)
        return [path("<int:task_id>/gold/", view, name="labeling_rankingtask_gold"),
                *super().get_urls()]

    def gold_view(self, request, task_id):
        """Staff set a task's known best and/or worst reply (`ranking_task_set_gold`): it is
        then mixed into labelers' queues at the project's gold rate and scores them."""
        if not request.user.has_perm("labeling.view_rankingtask"):
            raise PermissionDenied
        task = RankingTask.objects.select_related("prompt", "project").filter(pk=task_id).first()
        if task is None:
            raise Http404("No such ranking task.")
        status = 200
        if request.method == "POST":
            try:
                ranking_task_set_gold(task_id=task.pk, best_id=request.POST.get("best") or None,
                                      worst_id=request.POST.get("worst") or None)
            except LabelingError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                status = 400
            else:
                self.message_user(request, f"Task {task.pk}: gold answer saved.", messages.SUCCESS)
                changelist = reverse("admin:labeling_rankingtask_changelist")
                return HttpResponseRedirect(f"{changelist}?gold=yes")
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "task": task,
            "title": f"Gold answer of task {task.pk}",
            "completions": [i.completion for i in task.items.select_related("completion")],
        }
        return TemplateResponse(request, "admin/labeling/rankingtask/gold.html", context,
                                status=status)

    @admin.action(description="Re-open: ask for one more ranking (complete or cancelled tasks)")
    def reopen(self, request, queryset):
        n = _report(self, request, lambda: ranking_tasks_reopen(
            task_ids=list(queryset.values_list("pk", flat=True))))
        if n is not None:
            self.message_user(request, f"Re-opened {n} task(s).")

    @admin.action(description="Cancel: withdraw open tasks from the queue")
    def cancel(self, request, queryset):
        n = ranking_tasks_cancel(task_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Cancelled {n} task(s).")

    @admin.action(description="Export selected tasks' rankings (JSONL, every labeler's order)")
    def export_selected(self, request, queryset):
        selected = set(queryset.values_list("pk", flat=True))
        as_of = timezone.now()
        lines = []
        for project in Project.objects.filter(ranking_tasks__in=selected).distinct():
            groups = exports.ranking_groups(project=project, as_of=as_of)
            lines += exports.jsonl_lines(g for g in groups if g["task_id"] in selected)
        response = HttpResponse("".join(lines), content_type="application/jsonl")
        response["Content-Disposition"] = 'attachment; filename="rankings.jsonl"'
        return response


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "labeler", "status", "task_id", "prompt_id", "created_at",
                    "expires_at"]
    list_filter = ["kind", "status", "prompt__project"]
    search_fields = ["labeler__username", "=task__id"]
    list_select_related = ["labeler"]
    actions = ["release"]

    def has_change_permission(self, request, obj=None):
        return obj is None

    @admin.action(description="Release: end these leases now, tasks go back to the queue")
    def release(self, request, queryset):
        n = assignments_release(assignment_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Released {n} lease(s).")


@admin.register(Ranking)
class RankingAdmin(ReadOnlyAdmin):
    list_display = ["id", "task_id", "labeler", "all_bad", "has_flags", "time_spent_ms",
                    "created_at"]
    list_filter = ["all_bad", "task__project", "created_at"]
    search_fields = ["labeler__username", "comment", "=task__id"]
    list_select_related = ["labeler"]

    @admin.display(boolean=True, description="flags")
    def has_flags(self, obj):
        return bool(obj.flags)


class UneditedFilter(admin.SimpleListFilter):
    title = "model suggestion"
    parameter_name = "suggestion"

    def lookups(self, request, model_admin):
        return [("unedited", "Saved unedited"), ("edited", "Edited"), ("none", "No suggestion")]

    def queryset(self, request, queryset):
        if self.value() == "unedited":
            return queryset.filter(edit_distance=0)
        if self.value() == "edited":
            return queryset.filter(edit_distance__gt=0)
        if self.value() == "none":
            return queryset.filter(edit_distance__isnull=True)
        return queryset


@admin.register(Demonstration)
class DemonstrationAdmin(ReadOnlyAdmin):
    list_display = ["id", "prompt_summary", "author", "is_dialogue", "edit_distance",
                    "unedited", "time_spent_ms", "created_at"]
    list_filter = ["is_dialogue", UneditedFilter, "prompt__project", "created_at"]
    search_fields = ["author__username", "prompt__text"]
    list_select_related = ["author", "prompt"]

    @admin.display(description="prompt")
    def prompt_summary(self, obj):
        return short(obj.prompt.text)

    @admin.display(boolean=True, description="unedited suggestion")
    def unedited(self, obj):
        return obj.is_unedited_suggestion


@admin.register(LabelerExclusion)
class LabelerExclusionAdmin(ReadOnlyAdmin):
    """Made and lifted on the labelers page (/label/stats/<project>/); listed here."""

    list_display = ["id", "project", "labeler", "reason", "created_by", "created_at", "lifted_at"]
    list_filter = ["project"]
    search_fields = ["labeler__username", "reason"]
    list_select_related = ["project", "labeler", "created_by"]


@admin.register(Skip)
class SkipAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "labeler", "reason", "task_id", "prompt_id", "created_at"]
    list_filter = ["kind", "prompt__project"]
    search_fields = ["reason", "labeler__username"]
    list_select_related = ["labeler"]


@admin.register(ExportSnapshot)
class ExportSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["snapshot_id", "project", "as_of", "counts", "created_by", "created_at"]
    list_filter = ["project"]
    search_fields = ["snapshot_id"]


# The evaluation tables and the prompts (with their import page) register from their own modules.
from labeling import evaluation_admin, prompt_admin  # noqa: E402, F401
