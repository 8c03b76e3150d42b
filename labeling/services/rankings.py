"""Submitting a ranking: an ordering (with ties) of exactly the task's completions."""
from django.db import transaction
from django.utils import timezone

from labeling.errors import Conflict, Invalid
from labeling.models import Assignment, Ranking, RankingTask
from labeling.parsing import row_id
from labeling.services.queue import lock_own_assignment
from labeling.validation import MAX_COMMENT_CHARS, clean_text

FLAGS = ("harmful", "untrue", "private")
MAX_TIME_SPENT_MS = 24 * 3600 * 1000


@transaction.atomic
def ranking_submit(
    *,
    assignment_id,
    labeler,
    order: list[list[int]],
    all_bad: bool = False,
    flags: dict | None = None,
    comment: str = "",
    time_spent_ms: int = 0,
) -> Ranking:
    """Store one ranking for a live lease. Idempotent: submitting the same order for the same
    assignment again (a double click, a retried request) returns the first ranking and writes
    nothing; another order for it is a Conflict."""
    assignment = lock_own_assignment(assignment_id=assignment_id, labeler=labeler)
    if assignment.kind != Assignment.Kind.RANKING:
        raise Invalid("This task asks for a demonstration, not a ranking.")
    if assignment.status == Assignment.Status.SUBMITTED:
        return _replayed(assignment.ranking, order)
    if assignment.status == Assignment.Status.SKIPPED:
        raise Conflict("You skipped this task.")
    task = RankingTask.objects.select_for_update().get(pk=assignment.task_id)
    # Liveness and the slot are checked only now, holding the task's lock: a submit delayed
    # before this lock may find its lease expired and the slot claimed (and filled) by another.
    if not assignment.is_live():
        raise Conflict("Your time on this task ran out; take the next task.")
    if task.status == RankingTask.Status.CANCELLED:
        raise Conflict("This task was withdrawn.")
    if task.rankings_count >= task.rankings_needed and not task.is_gold:  # gold: everyone's
        raise Conflict("This task already has all the rankings it needs; take the next task.")
    ids = set(task.items.order_by().values_list("completion_id", flat=True))
    ranking = Ranking(
        task=task,
        labeler=labeler,
        assignment=assignment,
        order=clean_order(order, ids),
        all_bad=bool(all_bad),
        flags=clean_flags(flags, ids),
        comment=clean_text(comment or "", field="The comment", max_chars=MAX_COMMENT_CHARS,
                           required=False).strip(),
        time_spent_ms=clean_time_spent(time_spent_ms),
        created_at=timezone.now(),
    )
    ranking.full_clean(exclude=["task", "labeler", "assignment"], validate_unique=False,
                       validate_constraints=False)  # the related rows are locked in hand
    ranking.save()
    assignment.status = Assignment.Status.SUBMITTED
    assignment.save(update_fields=["status"])
    task.rankings_count += 1  # the task row is locked: no lost update
    if task.rankings_count >= task.rankings_needed and not task.is_gold:
        task.status = RankingTask.Status.COMPLETE
    task.save(update_fields=["rankings_count", "status"])
    return ranking


def _replayed(ranking: Ranking, order) -> Ranking:
    """A repeated submit (a double click, a retried request) gets the stored ranking; one with
    another order is refused, so a client that reads only the status is not told it was saved."""
    if _same_order(ranking.order, order):
        return ranking
    raise Conflict("This task was already submitted with a different order; "
                   "a ranking cannot be changed.")


def _same_order(stored: list[list[int]], order) -> bool:
    try:
        posted = clean_order(order, {i for group in stored for i in group})
    except Invalid:
        return False
    return [sorted(g) for g in posted] == [sorted(g) for g in stored]


def _as_id(value) -> int:
    completion_id = row_id(value)
    if completion_id is None:
        raise Invalid("A ranking lists completion ids.")
    return completion_id


def clean_order(order, ids: set[int]) -> list[list[int]]:
    """Groups best to worst; a bare id is a group of one; every completion exactly once."""
    if not isinstance(order, list | tuple) or not order:
        raise Invalid("Order the completions from best to worst.")
    groups, seen = [], []
    for group in order:
        members = [_as_id(v) for v in (group if isinstance(group, list | tuple) else [group])]
        if not members:
            raise Invalid("A ranking has an empty group.")
        groups.append(members)
        seen.extend(members)
    if len(seen) != len(set(seen)):
        raise Invalid("A completion appears twice in the ranking.")
    if set(seen) != ids:
        missing, foreign = ids - set(seen), set(seen) - ids
        detail = []
        if missing:
            detail.append(f"{len(missing)} completion(s) not ranked")
        if foreign:
            detail.append(f"{len(foreign)} id(s) not in this task")
        raise Invalid("Rank every completion of this task exactly once: " + ", ".join(detail) + ".")
    return groups


def clean_flags(flags, ids: set[int]) -> dict[str, list[str]]:
    if not flags:
        return {}
    if not isinstance(flags, dict):
        raise Invalid("Flags must map completion ids to flag names.")
    cleaned = {}
    for key, names in flags.items():
        completion_id = _as_id(key)
        if completion_id not in ids:
            raise Invalid("A flag names a completion that is not in this task.")
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list | tuple) or any(n not in FLAGS for n in names):
            raise Invalid(f"Flags are any of {', '.join(FLAGS)}.")
        if names:
            cleaned[str(completion_id)] = sorted(set(names), key=FLAGS.index)
    return cleaned


def clean_time_spent(value) -> int:
    try:
        value = int(value or 0)
    except (TypeError, ValueError):
        raise Invalid("Time spent must be a whole number of milliseconds.") from None
    return max(0, min(value, MAX_TIME_SPENT_MS))
