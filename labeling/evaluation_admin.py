"""The admin of the evaluation tables: comparison batches (cancel), their tasks (cancel) and the
votes, all read-only: batches come from the staff evaluation page, votes from labelers. Imported
by `labeling.admin` so the admin site registers them."""
from django.contrib import admin

from labeling.admin import ReadOnlyAdmin, short
from labeling.models import ComparisonBatch, ComparisonTask, Vote
from labeling.services.comparisons import comparison_batch_cancel


@admin.register(ComparisonBatch)
class ComparisonBatchAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "versions", "status", "votes_needed", "created_by",
                    "created_at"]
    list_filter = ["status", "project"]
    list_select_related = ["project", "created_by"]
    actions = ["cancel"]

    def has_change_permission(self, request, obj=None):
        return obj is None  # the list (and its actions), not the form

    @admin.display(description="versions")
    def versions(self, obj):
        return ", ".join(obj.version_names.values())

    @admin.action(description="Cancel: withdraw the open tasks of the selected comparisons")
    def cancel(self, request, queryset):
        n = comparison_batch_cancel(batch_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"Withdrew {n} open task(s).")


@admin.register(ComparisonTask)
class ComparisonTaskAdmin(ReadOnlyAdmin):
    list_display = ["id", "batch", "prompt_summary", "model_a", "model_b", "status",
                    "votes_count", "votes_needed", "created_at"]
    list_filter = ["status", "project"]
    search_fields = ["prompt__text"]
    list_select_related = ["batch", "prompt", "completion_a", "completion_b"]

    @admin.display(description="prompt")
    def prompt_summary(self, obj):
        return short(obj.prompt.text)

    @admin.display(description="A (left)")
    def model_a(self, obj):
        return obj.completion_a.model_label

    @admin.display(description="B (right)")
    def model_b(self, obj):
        return obj.completion_b.model_label


@admin.register(Vote)
class VoteAdmin(ReadOnlyAdmin):
    list_display = ["id", "source", "project", "task", "labeler", "version_a_id", "version_b_id",
                    "outcome", "likert_a", "likert_b", "created_at"]
    list_filter = ["source", "outcome", "project"]
    list_select_related = ["project", "labeler"]
