"""Blind pairwise comparisons: a batch of (model versions x evaluation prompts), the replies the
workers push back, the pairwise tasks made from them, and the votes.

    batch = comparison_batch_create(project=p, versions={3: "sft-1", 7: "policy-2"}, ...)
    comparison_replies_add(batch_id=batch.pk, version_id=3, replies=[(prompt_id, text, {...})])
    vote_submit(assignment_id=a.pk, labeler=u, outcome="a", likert_a=6, likert_b=3)

The training side checks that the versions exist and belong to the project
(`training.services.evaluation`); here only ids and names are known. A task is made for every
pair of versions on a prompt as soon as both have replied; which reply is shown on the left is
drawn at random then, so neither the position nor the order of the versions gives a model away.
"""
import itertools
import random

from django.db import transaction
from django.utils import timezone

from labeling.errors import Conflict, Invalid
from labeling.evaluation_models import LIKERT_MAX, LIKERT_MIN, REPLY_FLAGS
from labeling.models import (
    Assignment,
    ComparisonBatch,
    ComparisonReply,
    ComparisonTask,
    Completion,
    Project,
    Prompt,
    Vote,
)
from labeling.services.queue import lock_own_assignment
from labeling.services.rankings import clean_time_spent
from labeling.validation import MAX_COMMENT_CHARS, clean_text

MAX_VERSIONS = 12
MAX_VOTES_NEEDED = 20
_sides = random.SystemRandom()  # not seeded: nobody can predict which side a model gets


def evaluation_prompts(project: Project):
    return Prompt.objects.filter(project=project, is_evaluation=True, duplicate_of__isnull=True)


@transaction.atomic
def comparison_batch_create(
    *, project: Project, versions: dict[int, str], request_token: str,
    prompt_ids: list[int] | None = None, votes_needed: int | None = None,
    sampling: dict | None = None, created_by=None,
) -> ComparisonBatch:
    """Record a batch: at least two different versions, the project's evaluation prompts (all,
    or those named). The same `request_token` returns the first batch and creates nothing."""
    request_token = clean_text(request_token, field="The request token", max_chars=100).strip()
    if existing := ComparisonBatch.objects.filter(request_token=request_token).first():
        return existing
    if not project.is_active:
        raise Conflict(f"The project {project.name} is closed.")
    if len(versions) < 2:
        raise Invalid("Choose at least two different model versions to compare.")
    if len(versions) > MAX_VERSIONS:
        raise Invalid(f"Compare at most {MAX_VERSIONS} versions at once.")
    if votes_needed is not None and (isinstance(votes_needed, bool) or not isinstance(
            votes_needed, int) or not 1 <= votes_needed <= MAX_VOTES_NEEDED):
        raise Invalid(f"Votes per pair is a whole number from 1 to {MAX_VOTES_NEEDED}.")
    prompts = evaluation_prompts(project)
    if prompt_ids is not None:
        prompts = prompts.filter(pk__in=prompt_ids)
        if prompts.count() != len(set(prompt_ids)):
            raise Invalid("Some of the chosen prompts are not evaluation prompts of this project.")
    prompt_ids = list(prompts.values_list("id", flat=True))
    if not prompt_ids:
        raise Invalid(f"The project {project.name} has no evaluation prompts: hold some out "
                      "first (admin: Prompts -> Hold out for evaluation).")
    batch = ComparisonBatch(
        project=project, version_ids=sorted(versions),
        version_names={str(k): v for k, v in versions.items()},
        votes_needed=votes_needed or project.overlap, sampling=sampling or {},
        request_token=request_token, created_by=created_by, created_at=timezone.now(),
    )  # fmt: skip
    batch.full_clean(exclude=["project", "created_by"], validate_unique=False)
    batch.save()
    batch.prompts.set(prompt_ids)
    return batch


@transaction.atomic
def comparison_batch_set_runs(*, batch_id: int, run_ids: dict[int, int]) -> ComparisonBatch:
    """Remember which sample run writes each version's replies (shown on the staff page)."""
    batch = ComparisonBatch.objects.select_for_update().get(pk=batch_id)
    batch.run_ids = {**batch.run_ids, **{str(k): v for k, v in run_ids.items()}}
    batch.save(update_fields=["run_ids"])
    return batch


@transaction.atomic
def comparison_replies_add(
    *, batch_id: int, version_id: int, replies: list[tuple[int, str, dict]], priority: int = 0
) -> list[ComparisonTask]:
    """Store one version's replies (prompt id, text, sampling settings) and make the tasks they
    complete. Idempotent: a reply already stored for (prompt, version) is kept, the new one
    dropped, so a resumed or redelivered sample run writes nothing twice."""
    batch = ComparisonBatch.objects.select_for_update().select_related("project").get(pk=batch_id)
    if version_id not in batch.version_ids:
        raise Invalid(f"Version {version_id} is not compared in this batch.")
    wanted = set(batch.prompts.values_list("id", flat=True))
    have = set(ComparisonReply.objects.filter(batch=batch, version_id=version_id)
               .values_list("prompt_id", flat=True))  # fmt: skip
    now = timezone.now()
    label = batch.version_names.get(str(version_id), "")
    for prompt_id, text, sampling in replies:
        if prompt_id not in wanted:
            raise Invalid(f"Prompt {prompt_id} is not in this comparison.")
        if prompt_id in have:
            continue
        completion = Completion(
            prompt_id=prompt_id, text=clean_text(text, field="A reply"), model_label=label,
            model_version_id=version_id, sampling={**sampling, "comparison": batch.pk},
            created_at=now,
        )  # fmt: skip
        completion.save()
        ComparisonReply.objects.create(batch=batch, prompt_id=prompt_id, version_id=version_id,
                                       completion=completion)  # fmt: skip
        have.add(prompt_id)
    return _make_tasks(batch, prompt_ids={p for p, _, _ in replies}, priority=priority, now=now)


def _make_tasks(batch, *, prompt_ids, priority, now) -> list[ComparisonTask]:
    """A task for each pair of versions that both replied to one of `prompt_ids` and has none
    yet (the batch row is locked: two pushes at once cannot make a pair twice)."""
    by_prompt: dict[int, dict[int, int]] = {}
    for prompt_id, version_id, completion_id in ComparisonReply.objects.filter(
        batch=batch, prompt_id__in=prompt_ids
    ).values_list("prompt_id", "version_id", "completion_id"):
        by_prompt.setdefault(prompt_id, {})[version_id] = completion_id
    made = {
        frozenset(pair) for pair in ComparisonTask.objects.filter(
            batch=batch, prompt_id__in=prompt_ids
        ).values_list("completion_a_id", "completion_b_id")
    }  # fmt: skip
    tasks = []
    for prompt_id, replies in sorted(by_prompt.items()):
        for left, right in itertools.combinations(sorted(replies.values()), 2):
            if frozenset((left, right)) in made:
                continue
            if _sides.random() < 0.5:
                left, right = right, left
            tasks.append(ComparisonTask(
                batch=batch, project=batch.project, prompt_id=prompt_id, completion_a_id=left,
                completion_b_id=right, votes_needed=batch.votes_needed, priority=priority,
                created_at=now,
            ))  # fmt: skip
    return ComparisonTask.objects.bulk_create(tasks)


@transaction.atomic
def comparison_batch_cancel(*, batch_ids: list[int]) -> int:
    """Staff: withdraw a batch's open tasks (votes so far are kept and still counted)."""
    ComparisonBatch.objects.filter(pk__in=batch_ids).update(
        status=ComparisonBatch.Status.CANCELLED
    )
    return ComparisonTask.objects.filter(
        batch_id__in=batch_ids, status=ComparisonTask.Status.OPEN
    ).update(status=ComparisonTask.Status.CANCELLED)


@transaction.atomic
def vote_submit(
    *, assignment_id, labeler, outcome: str, likert_a=None, likert_b=None,
    flags: dict | None = None, comment: str = "", time_spent_ms: int = 0,
) -> Vote:
    """Store one vote for a live comparison lease. Idempotent as `ranking_submit`: the same
    assignment submitted again returns the first vote and writes nothing."""
    assignment = lock_own_assignment(assignment_id=assignment_id, labeler=labeler)
    if assignment.kind != Assignment.Kind.COMPARISON:
        raise Invalid(f"This task asks for a {assignment.kind}, not a comparison vote.")
    if assignment.status == Assignment.Status.SUBMITTED:
        return assignment.vote
    if assignment.status == Assignment.Status.SKIPPED:
        raise Conflict("You skipped this task.")
    task = (
        ComparisonTask.objects.select_for_update(of=("self",))
        .select_related("completion_a", "completion_b").get(pk=assignment.comparison_id)
    )  # fmt: skip
    # Liveness and the slot are checked holding the task's lock, as `ranking_submit` does: a
    # submit delayed before the lock may find its lease expired and its slot filled by another.
    if not assignment.is_live():
        raise Conflict("Your time on this task ran out; take the next task.")
    if task.status == ComparisonTask.Status.CANCELLED:
        raise Conflict("This comparison was withdrawn.")
    if task.votes_count >= task.votes_needed:
        raise Conflict("This comparison already has all the votes it needs; take the next task.")
    vote = Vote(
        source=Vote.Source.COMPARISON, project_id=task.project_id, task=task,
        assignment=assignment, labeler=labeler,
        version_a_id=task.completion_a.model_version_id,
        version_b_id=task.completion_b.model_version_id,
        completion_a=task.completion_a, completion_b=task.completion_b,
        outcome=clean_outcome(outcome), likert_a=clean_likert(likert_a),
        likert_b=clean_likert(likert_b), flags=clean_reply_flags(flags),
        comment=clean_text(comment or "", field="The comment", max_chars=MAX_COMMENT_CHARS,
                           required=False).strip(),
        time_spent_ms=clean_time_spent(time_spent_ms), created_at=timezone.now(),
    )  # fmt: skip
    vote.full_clean(exclude=["project", "task", "assignment", "labeler", "completion_a",
                             "completion_b"], validate_unique=False, validate_constraints=False)
    vote.save()
    assignment.status = Assignment.Status.SUBMITTED
    assignment.save(update_fields=["status"])
    task.votes_count += 1  # the task row is locked: no lost update
    if task.votes_count >= task.votes_needed:
        task.status = ComparisonTask.Status.COMPLETE
    task.save(update_fields=["votes_count", "status"])
    return vote


def clean_outcome(value) -> str:
    if value not in Vote.Outcome.values:
        raise Invalid("Say which reply is better: a, b, tie or both_bad.")
    return value


def clean_likert(value) -> int | None:
    """An overall score from 1 (worst) to 7 (best), or None when not given."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not str(value).strip().isdigit():
        raise Invalid(f"A score is a whole number from {LIKERT_MIN} to {LIKERT_MAX}.")
    score = int(str(value).strip())
    if not LIKERT_MIN <= score <= LIKERT_MAX:
        raise Invalid(f"A score is a whole number from {LIKERT_MIN} to {LIKERT_MAX}.")
    return score


def clean_reply_flags(flags) -> dict[str, list[str]]:
    """{"a": [...], "b": [...]} with InstructGPT's per-reply labels (`REPLY_FLAGS`)."""
    if not flags:
        return {}
    if not isinstance(flags, dict) or set(flags) - {"a", "b"}:
        raise Invalid("Flags map the sides a and b to lists of labels.")
    cleaned = {}
    for side, names in flags.items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list | tuple) or any(n not in REPLY_FLAGS for n in names):
            raise Invalid(f"Reply labels are any of {', '.join(REPLY_FLAGS)}.")
        if names:
            cleaned[side] = sorted(set(names), key=list(REPLY_FLAGS).index)
    return cleaned
