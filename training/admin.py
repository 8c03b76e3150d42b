"""The Django admin for model versions and training runs. Runs are created and changed only
through the services (the actions call run_cancel / run_resume); fields a worker writes are
read-only here."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from training.errors import TrainingError
from training.forms import ModelImportForm
from training.ml.shipped import shipped_model_path
from training.models import Generation, ModelVersion, Round, RunMetric, TrainingRun
from training.services.model_versions import model_version_import
from training.services.rounds import round_advance
from training.services.runs import run_cancel, run_resume, runs_mark_stale
from webapp.queueing import QueueUnavailable


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "project", "parent", "run", "created_at")
    list_filter = ("kind", "project")
    search_fields = ("name", "checkpoint_dir")
    readonly_fields = (
        "kind",
        "project",
        "parent",
        "run",
        "checkpoint_dir",
        "tokenizer_path",
        "metrics",
        "created_at",
    )
    fields = ("name", *readonly_fields)

    def has_add_permission(self, request):
        return False  # versions come from runs, or from "Import a model" (`manage.py import_model`)

    def get_urls(self):
        view = self.admin_site.admin_view(self.import_view)  # staff login, CSRF, never cached
        return [path("import/", view, name="training_modelversion_import"), *super().get_urls()]

    def import_view(self, request):
        """Import a Hugging Face directory or a GGUF file as a base model version. It runs in
        the request (a 135M model takes seconds); a model that cannot be read is an error on
        the page and nothing is written."""
        if not request.user.has_perm("training.add_modelversion"):
            raise PermissionDenied
        status = 200
        if request.method == "POST":
            form = ModelImportForm(request.POST)
            status = 400
            if form.is_valid():
                data = form.cleaned_data
                try:
                    source = shipped_model_path() if data["shipped"] else data["path"].strip()
                    version = model_version_import(
                        path=str(source), name=data["name"], project=data["project"]
                    )
                except TrainingError as exc:
                    form.add_error(None, exc.message)
                except ValueError as exc:  # the shipped model is not installed
                    form.add_error(None, str(exc))
                else:
                    self.message_user(request, f"Imported {version.name}.", messages.SUCCESS)
                    return HttpResponseRedirect(
                        reverse("admin:training_modelversion_change", args=[version.pk])
                    )
        else:
            form = ModelImportForm()
        context = {
            **self.admin_site.each_context(request), "opts": self.opts, "title": "Import a model",
            "form": form,
        }  # fmt: skip
        return TemplateResponse(
            request, "admin/training/modelversion/import.html", context, status=status
        )


class RunMetricInline(admin.TabularInline):
    model = RunMetric
    extra = 0
    can_delete = False
    fields = readonly_fields = ("step", "values", "created_at")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "kind",
        "project",
        "status",
        "step",
        "total",
        "input_model",
        "output_model",
        "worker",
        "created_at",
    )
    list_filter = ("status", "kind", "project")
    search_fields = ("id", "snapshot_id", "worker")
    actions = ("cancel", "resume", "mark_stale")
    readonly_fields = [f.name for f in TrainingRun._meta.concrete_fields] + ["dataset"]
    exclude = ("demonstrations", "rankings", "prompts")
    inlines = [RunMetricInline]

    def has_add_permission(self, request):
        return False  # from the project's training page, which checks the data first

    @admin.display(description="dataset snapshot")
    def dataset(self, run):
        return (
            f"{run.snapshot_id}: {run.demonstrations.count()} demonstrations, "
            f"{run.rankings.count()} rankings, {run.prompts.count()} prompts"
        )

    def _each(self, request, queryset, action, verb):
        done = 0
        for run in queryset:
            try:
                action(run_id=run.pk, by=request.user)
                done += 1
            except (TrainingError, QueueUnavailable) as exc:
                self.message_user(request, f"Run #{run.pk}: {exc}", messages.WARNING)
        if done:
            self.message_user(request, f"{verb} {done} run(s).", messages.SUCCESS)

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request, queryset):
        self._each(request, queryset, run_cancel, "Cancelled (or asked to stop)")

    @admin.action(description="Resume the selected runs from their last checkpoint")
    def resume(self, request, queryset):
        self._each(request, queryset, run_resume, "Resumed")

    @admin.action(description="Mark runs whose worker vanished as failed (all runs)")
    def mark_stale(self, request, queryset):
        marked = runs_mark_stale()
        self.message_user(request, f"Marked {len(marked)} run(s) failed: {marked or 'none'}.")


@admin.register(Round)
class RoundAdmin(admin.ModelAdmin):
    list_display = ("project", "number", "stage", "policy", "sample_run", "reward_run", "ppo_run",
                    "dpo_run")
    list_filter = ("stage", "project")
    actions = ("continue_rounds",)
    readonly_fields = [f.name for f in Round._meta.concrete_fields]

    def has_add_permission(self, request):
        return False  # "continue round" on the project's training page opens one

    @admin.action(description="Continue the selected rounds (resume a failed run)")
    def continue_rounds(self, request, queryset):
        for round_ in queryset:
            try:
                round_advance(round_id=round_.pk, resume=True, by=request.user)
            except (TrainingError, QueueUnavailable) as exc:
                self.message_user(request, f"Round {round_.number}: {exc}", messages.WARNING)


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    """Read only: replies are written by the inference worker."""

    list_display = ("key", "model_version", "requested_by", "status", "completion_tokens",
                    "created_at")  # fmt: skip
    list_filter = ("status", "model_version")
    search_fields = ("key", "requested_by__username", "text")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
