"""Ranking tasks: model samples pushed back by the training side, and staff corrections."""
import math

from django.db import transaction
from django.utils import timezone

from labeling.errors import Invalid, NotFound
from labeling.models import Completion, Project, Prompt, RankingTask, TaskCompletion
from labeling.parsing import DB_BIGINT_MAX, DB_INT_MAX, whole_number
from labeling.validation import clean_text

MAX_BATCH_KEY_CHARS = 100
MAX_SAMPLING_KEYS = 50


@transaction.atomic
def ranking_tasks_create(
    *,
    project: Project,
    prompt_completions: list[tuple[int, list[dict]]],
    batch_key: str,
    priority: int = 0,
) -> list[RankingTask]:
    """One ranking task per (prompt id, K completions), K equal to the project's k.

    Each completion is {"text", "model_label", "model_version_id", "sampling"}. Idempotent by
    `batch_key`: pushing the same batch again (a retried Celery task) returns the tasks the
    first push created for those prompts and creates nothing. All or nothing.
    """
    batch_key = clean_text(batch_key, field="The batch key", max_chars=MAX_BATCH_KEY_CHARS).strip()
    priority = _priority(priority)
    prompt_ids = [_as_int(prompt_id, "prompt id", minimum=1) for prompt_id, _ in prompt_completions]
    if len(set(prompt_ids)) != len(prompt_ids):
        raise Invalid("A batch names a prompt twice.")
    prompts = Prompt.objects.in_bulk(prompt_ids)
    existing = {
        t.prompt_id: t
        for t in RankingTask.objects.filter(project=project, batch_key=batch_key)
    }
    now = timezone.now()
    tasks, items, pending = [], [], []
    for prompt_id, completions in zip(prompt_ids, (c for _, c in prompt_completions), strict=True):
        if prompt_id in existing:
            tasks.append(existing[prompt_id])
            continue
        prompt = prompts.get(prompt_id)
        if prompt is None or prompt.project_id != project.pk:
            raise NotFound(f"Prompt {prompt_id} is not in the project {project.name}.")
        if not isinstance(completions, list) or len(completions) != project.k:
            raise Invalid(
                f"Prompt {prompt_id}: a task has exactly {project.k} completions in this project."
            )
        task = RankingTask(
            project=project, prompt=prompt, rankings_needed=project.overlap, priority=priority,
            batch_key=batch_key, created_at=now,
        )
        task.full_clean(validate_unique=False, validate_constraints=False)
        tasks.append(task)
        pending.append((task, [_completion(prompt, c, now) for c in completions]))
    RankingTask.objects.bulk_create([t for t, _ in pending])
    Completion.objects.bulk_create([c for _, cs in pending for c in cs])
    for task, completions in pending:
        items += [TaskCompletion(task=task, completion=c, position=i)
                  for i, c in enumerate(completions)]
    TaskCompletion.objects.bulk_create(items)
    return tasks


def _as_int(value, what: str, *, minimum=0, maximum=DB_BIGINT_MAX) -> int:
    number = whole_number(value, minimum=minimum, maximum=maximum)
    if number is None:
        raise Invalid(f"Not a {what}: {str(value)[:40]!r}.")
    return number


def _completion(prompt: Prompt, data: dict, now) -> Completion:
    if not isinstance(data, dict):
        raise Invalid("A completion is an object with a text.")
    version = data.get("model_version_id")
    sampling = clean_sampling(data.get("sampling") or {})
    completion = Completion(
        prompt=prompt,
        text=clean_text(data.get("text"), field="A completion"),
        model_label=clean_text(data.get("model_label") or "", field="The model label",
                               max_chars=100, required=False),
        model_version_id=None if version is None else _as_int(
            version, "model version id", maximum=DB_INT_MAX),
        sampling=sampling,
        created_at=now,
    )
    completion.full_clean(exclude=["prompt"])
    return completion


def clean_sampling(sampling) -> dict:
    """Sampling settings are a flat object of names to plain values (temperature, seed, ...):
    nothing nested (a deep nesting cannot be stored), no NUL and no NaN (PostgreSQL's jsonb
    refuses both)."""
    if not isinstance(sampling, dict) or len(sampling) > MAX_SAMPLING_KEYS:
        raise Invalid(f"A completion's sampling settings are an object of at most "
                      f"{MAX_SAMPLING_KEYS} names.")
    cleaned = {}
    for name, value in sampling.items():
        name = clean_text(name, field="A sampling setting's name", max_chars=100)
        if isinstance(value, str):
            value = clean_text(value, field=f"The sampling setting {name[:40]}",
                               max_chars=1000, required=False)
        elif isinstance(value, float) and not math.isfinite(value):
            raise Invalid(f"The sampling setting {name[:40]} is not a finite number.")
        elif value is not None and not isinstance(value, bool | int | float):
            raise Invalid(f"The sampling setting {name[:40]} is a number, text, true/false "
                          "or null.")
        cleaned[name] = value
    return cleaned


def _priority(value) -> int:
    return _as_int(value, "priority", minimum=-DB_INT_MAX - 1, maximum=DB_INT_MAX)


@transaction.atomic
def ranking_tasks_reopen(*, task_ids: list[int], additional: int = 1) -> int:
    """Staff: ask for `additional` more rankings of complete tasks; bring cancelled ones back."""
    if additional < 1:
        raise Invalid("Ask for at least one more ranking.")
    reopened = 0
    for task in RankingTask.objects.select_for_update().filter(pk__in=task_ids):
        if task.status == RankingTask.Status.COMPLETE:
            task.rankings_needed = task.rankings_count + additional
        elif task.status == RankingTask.Status.CANCELLED:
            task.rankings_needed = max(task.rankings_needed, task.rankings_count + 1)
        else:
            continue
        task.status = RankingTask.Status.OPEN
        task.save(update_fields=["status", "rankings_needed"])
        reopened += 1
    return reopened


@transaction.atomic
def ranking_tasks_cancel(*, task_ids: list[int]) -> int:
    """Staff: withdraw open tasks from the queue (their rankings so far are kept)."""
    return RankingTask.objects.filter(pk__in=task_ids, status=RankingTask.Status.OPEN).update(
        status=RankingTask.Status.CANCELLED
    )


@transaction.atomic
def ranking_tasks_prioritize(*, task_ids: list[int], priority: int) -> int:
    return RankingTask.objects.filter(pk__in=task_ids).update(priority=_priority(priority))
