"""The Django admin for model versions and training runs. Runs are created and changed only
through the services (the actions call run_cancel / run_resume); fields a worker writes are
read-only here."""

from django.contrib import admin, messages

from training.errors import TrainingError
from training.models import ModelVersion, Round, RunMetric, TrainingRun
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
        return False  # versions come from runs, or `manage.py register_model`


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
    list_display = ("project", "number", "stage", "policy", "sample_run", "reward_run", "ppo_run")
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
