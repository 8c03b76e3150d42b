"""Quality control writes: gold answers on ranking tasks, and leaving a labeler's rankings out
of training. Reads (accuracy, speeders, agreement) are in `labeling.quality`."""
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from labeling.errors import Invalid, NotFound
from labeling.models import LabelerExclusion, Project, RankingTask
from labeling.validation import MAX_REASON_CHARS, clean_text


@transaction.atomic
def ranking_task_set_gold(*, task_id, best_id=None, worst_id=None) -> RankingTask:
    """Staff: the known best and/or worst reply of a task (both None: no longer gold).

    A gold task stays open while it is gold (every labeler is to rank it); made ordinary again,
    it is complete once it has the rankings it needs.
    """
    task = RankingTask.objects.select_for_update().filter(pk=task_id).first()
    if task is None:
        raise NotFound("No such ranking task.")
    ids = set(task.items.values_list("completion_id", flat=True))
    best, worst = _completion_id(best_id, ids), _completion_id(worst_id, ids)
    if best is not None and best == worst:
        raise Invalid("The best and the worst reply of a gold task are two different replies.")
    if task.status == RankingTask.Status.CANCELLED:
        raise Invalid("A cancelled task cannot be gold; re-open it first.")
    task.gold_best_id, task.gold_worst_id = best, worst
    if task.is_gold:
        task.status = RankingTask.Status.OPEN
    elif task.rankings_count >= task.rankings_needed:
        task.status = RankingTask.Status.COMPLETE
    task.save(update_fields=["gold_best", "gold_worst", "status"])
    return task


def _completion_id(value, ids: set[int]) -> int | None:
    if value in (None, ""):
        return None
    if not str(value).isdigit() or int(value) not in ids:
        raise Invalid("A gold answer names one of the task's own replies.")
    return int(value)


@transaction.atomic
def labeler_exclude(*, project: Project, labeler_id, created_by, reason: str = ""
                    ) -> LabelerExclusion:
    """Staff: leave this labeler's rankings of the project out of every snapshot taken from now
    on (snapshots taken before keep them). Idempotent: an exclusion in force is returned."""
    labeler = _labeler(labeler_id)
    existing = LabelerExclusion.objects.select_for_update().filter(
        project=project, labeler=labeler, lifted_at__isnull=True
    ).first()
    if existing is not None:
        return existing
    reason = clean_text(reason or "", field="The reason", max_chars=MAX_REASON_CHARS,
                        required=False).strip()
    exclusion = LabelerExclusion(project=project, labeler=labeler, reason=reason,
                                 created_by=created_by, created_at=timezone.now())
    exclusion.full_clean(validate_constraints=False)
    exclusion.save()
    return exclusion


@transaction.atomic
def labeler_include(*, project: Project, labeler_id) -> int:
    """Staff: lift an exclusion; snapshots taken from now on use the labeler's rankings again.
    Returns how many exclusions were lifted (0 when none was in force)."""
    return LabelerExclusion.objects.filter(
        project=project, labeler=_labeler(labeler_id), lifted_at__isnull=True
    ).update(lifted_at=timezone.now())


def _labeler(labeler_id):
    labeler = (
        get_user_model().objects.filter(pk=labeler_id).first()
        if str(labeler_id).isdigit() else None
    )
    if labeler is None:
        raise NotFound("No such labeler.")
    return labeler
