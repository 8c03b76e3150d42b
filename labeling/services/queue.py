"""The fair, safe queue: hand a task to one labeler at a time under a lease that expires.

Concurrency. A claim runs in one transaction that (1) locks the labeler's user row, so one
person's double-clicked "next task" is served once, (2) takes the first claimable row with
`SELECT ... FOR UPDATE SKIP LOCKED`, so concurrent claimers never wait on or share a row, and
(3) re-counts that row's rankings and live leases in a fresh statement while holding its lock:
every claimer of a task locks it first, so the count cannot change under us, and READ COMMITTED
sees every lease committed before the lock was taken. On SQLite `select_for_update` is a no-op;
there the settings open every transaction with BEGIN IMMEDIATE, which serializes writers, so
the same code is correct. Lock order everywhere: user, assignment, task.
"""
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from labeling import evaluation_selectors, selectors
from labeling.errors import Conflict, Forbidden, NotFound
from labeling.models import Assignment, ComparisonTask, Project, Prompt, RankingTask, Skip
from labeling.parsing import row_id
from labeling.validation import MAX_REASON_CHARS, clean_text

A = Assignment.Status
CLAIM_ATTEMPTS = 8


@dataclass(frozen=True)
class QueueKind:
    """What the queue needs to know about one kind of work: where its rows come from, which
    Assignment field leases one, and which of its counters say "enough"."""

    claimable: Callable  # selector(labeler=, project=, now=) -> QuerySet in queue order
    model: type
    target: str  # the Assignment field naming the row
    done: str
    needed: str
    open_status: str | None  # the row's status that may still be served (None: no status)


KINDS = {
    Assignment.Kind.RANKING: QueueKind(
        selectors.ranking_tasks_claimable, RankingTask, "task", "rankings_count",
        "rankings_needed", RankingTask.Status.OPEN),
    Assignment.Kind.DEMONSTRATION: QueueKind(
        selectors.prompts_to_demonstrate, Prompt, "prompt", "demonstrations_count",
        "demonstrations_needed", None),
    Assignment.Kind.COMPARISON: QueueKind(
        evaluation_selectors.comparison_tasks_claimable, ComparisonTask, "comparison",
        "votes_count", "votes_needed", ComparisonTask.Status.OPEN),
}  # fmt: skip


def ranking_claim_next(*, labeler, project: Project | None = None) -> Assignment | None:
    return _claim(labeler=labeler, project=project, kind=Assignment.Kind.RANKING)


def demonstration_claim_next(*, labeler, project: Project | None = None) -> Assignment | None:
    return _claim(labeler=labeler, project=project, kind=Assignment.Kind.DEMONSTRATION)


def comparison_claim_next(*, labeler, project: Project | None = None) -> Assignment | None:
    return _claim(labeler=labeler, project=project, kind=Assignment.Kind.COMPARISON)


@transaction.atomic
def _claim(*, labeler, project, kind) -> Assignment | None:
    _check_labeler(labeler)
    if project is not None and not project.is_active:
        raise Conflict(f"The project {project.name} is closed.")
    now = timezone.now()
    get_user_model().objects.select_for_update().filter(pk=labeler.pk).first()
    current = _current_lease(labeler=labeler, kind=kind, project=project, now=now)
    if current is not None:
        return current
    if kind == Assignment.Kind.RANKING and (gold := _gold_pick(labeler=labeler, project=project)):
        return _lease(labeler=labeler, row=gold, kind=kind, now=now)
    skipped: list[int] = []
    for _ in range(CLAIM_ATTEMPTS):
        row = _lock_next(labeler=labeler, project=project, kind=kind, now=now, exclude=skipped)
        if row is None:
            # Every candidate is locked by a claim in flight. With overlap > 1 such a row may
            # still have a slot after that claim commits, so wait for one instead of saying
            # "nothing to do" (claimers hold their lock for milliseconds).
            row = _lock_next(labeler=labeler, project=project, kind=kind, now=now,
                             exclude=skipped, wait=True)
        if row is None:
            return None
        if _has_free_slot(row, kind=kind, now=now):
            return _lease(labeler=labeler, row=row, kind=kind, now=now)
        skipped.append(row.pk)  # filled by a claim that committed after our snapshot
    return None


def _gold_pick(*, labeler, project) -> RankingTask | None:
    """A gold task this labeler has not seen, at its project's gold rate (a draw per claim), so
    nobody can tell a gold task from the others by when it comes."""
    gold = (
        selectors.gold_tasks_claimable(labeler=labeler, project=project)
        .select_related("project", "prompt")
        .first()
    )
    if gold is None or random.random() >= gold.project.gold_rate:
        return None
    return gold


def _check_labeler(labeler) -> None:
    if labeler is None or not labeler.is_authenticated or not labeler.is_active:
        raise Forbidden("Log in to label.")


def _current_lease(*, labeler, kind, project, now) -> Assignment | None:
    """The labeler's live lease of this kind (in this project); stale ones become expired, and
    a live one in another project is released so its slot goes back to the queue."""
    lease = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("prompt")
        .filter(labeler=labeler, kind=kind, status=A.ACTIVE)
        .first()
    )
    if lease is None:
        return None
    if lease.expires_at > now and (project is None or lease.prompt.project_id == project.pk):
        return lease
    lease.status = A.EXPIRED
    lease.expires_at = min(lease.expires_at, now)
    lease.save(update_fields=["status", "expires_at"])
    return None


def _lock_next(*, labeler, project, kind, now, exclude, wait=False):
    qs = KINDS[kind].claimable(labeler=labeler, project=project, now=now)
    related = ("project",) if kind == Assignment.Kind.DEMONSTRATION else ("project", "prompt")
    qs = qs.exclude(pk__in=exclude).select_related(*related)
    return qs.select_for_update(skip_locked=not wait, of=("self",)).first()


def _has_free_slot(row, *, kind, now) -> bool:
    """Re-count under the row lock. The row itself is current (PostgreSQL returns the newest
    version of a row it locks); the live leases are counted by this new statement."""
    spec = KINDS[kind]
    is_open = spec.open_status is None or row.status == spec.open_status
    if kind == Assignment.Kind.RANKING and row.is_gold:
        return is_open  # every labeler gets a gold task
    live = selectors.live_leases(now=now, kind=kind, **{spec.target: row}).count()
    return is_open and getattr(row, spec.done) + live < getattr(row, spec.needed)


def _lease(*, labeler, row, kind, now) -> Assignment:
    project = row.project
    on_prompt = kind == Assignment.Kind.DEMONSTRATION
    assignment = Assignment(
        kind=kind,
        prompt=row if on_prompt else row.prompt,
        labeler=labeler,
        created_at=now,
        expires_at=now + timedelta(seconds=project.lease_seconds),
    )
    if not on_prompt:
        setattr(assignment, KINDS[kind].target, row)
        row.prompt.project = project  # for the caller's page: no query for it
    # The related rows were just read (and locked): no need to look them up again.
    assignment.full_clean(exclude=["task", "comparison", "prompt", "labeler"],
                          validate_unique=False, validate_constraints=False)
    assignment.save()
    return assignment


def lock_own_assignment(*, assignment_id, labeler) -> Assignment:
    """The assignment, row-locked, if it exists and is this labeler's. Someone else's is the
    same NotFound as a missing one: ids must not tell which leases exist."""
    _check_labeler(labeler)
    assignment_id = row_id(assignment_id)
    assignment = (
        Assignment.objects.select_for_update(of=("self",))
        .select_related("prompt__project", "task", "comparison")
        .filter(pk=assignment_id, labeler=labeler)
        .first()
    ) if assignment_id is not None else None
    if assignment is None:
        raise NotFound(selectors.NO_SUCH_ASSIGNMENT)
    return assignment


@transaction.atomic
def assignment_renew(*, assignment_id, labeler) -> Assignment:
    """Extend a lease while its page is open. An expired lease comes back only if its slot is
    still free (nobody else took it and the labeler holds no other lease of its kind)."""
    assignment = lock_own_assignment(assignment_id=assignment_id, labeler=labeler)
    now = timezone.now()
    if assignment.status in (A.SUBMITTED, A.SKIPPED):
        raise Conflict(f"This task was already {assignment.status}.")
    if not assignment.is_live(now):
        _revive_or_conflict(assignment, now=now)
    assignment.status = A.ACTIVE
    assignment.expires_at = now + timedelta(seconds=assignment.prompt.project.lease_seconds)
    assignment.save(update_fields=["status", "expires_at"])
    return assignment


def _revive_or_conflict(assignment: Assignment, *, now) -> None:
    taken = Conflict("Your time on this task ran out and it went to someone else.")
    other = Assignment.objects.filter(
        labeler=assignment.labeler_id, kind=assignment.kind, status=A.ACTIVE
    ).exclude(pk=assignment.pk)
    if other.exists():
        raise taken
    spec = KINDS[assignment.kind]
    row_id = getattr(assignment, f"{spec.target}_id")
    row = spec.model.objects.select_for_update().get(pk=row_id)
    if not _has_free_slot(row, kind=assignment.kind, now=now):
        raise taken


@transaction.atomic
def assignment_skip(*, assignment_id, labeler, reason: str) -> Skip:
    """Skip with a reason; the task is never served to this labeler again. Idempotent."""
    assignment = lock_own_assignment(assignment_id=assignment_id, labeler=labeler)
    if assignment.status == A.SKIPPED:
        return assignment.skip
    if assignment.status == A.SUBMITTED:
        raise Conflict("This task was already submitted.")
    reason = clean_text(reason, field="The reason", max_chars=MAX_REASON_CHARS).strip()
    skip = Skip(
        kind=assignment.kind, task=assignment.task, prompt=assignment.prompt,
        labeler=labeler, assignment=assignment, reason=reason,
    )
    skip.full_clean(validate_unique=False)
    skip.save()
    assignment.status = A.SKIPPED
    assignment.save(update_fields=["status"])
    return skip


def assignments_expire(*, now=None) -> int:
    """Mark every lease past its time as expired (a periodic sweep; claims do not need it)."""
    now = now or timezone.now()
    return Assignment.objects.filter(status=A.ACTIVE, expires_at__lte=now).update(status=A.EXPIRED)


@transaction.atomic
def assignments_release(*, assignment_ids: list[int]) -> int:
    """Staff: end live leases now so their tasks go back to the queue."""
    now = timezone.now()
    return Assignment.objects.filter(pk__in=assignment_ids, status=A.ACTIVE).update(
        status=A.EXPIRED, expires_at=now
    )
