"""Starting a blind human comparison of model versions: the training side of
`labeling.services.comparisons`.

    batch = comparison_start(project=p, versions=[sft, policy], created_by=staff)

Checks what only this side knows (the versions exist, can write replies and belong to the
project), records the batch, and makes one sample run per version (the ordinary `sample` kind
and Celery task, with `config["comparison"]` naming the batch: one reply per evaluation prompt
instead of K per prompt for ranking). The runs are handed to workers after the batch commits;
each pushes its replies back with `comparison_replies_add`, which makes the pairwise tasks.
"""

import uuid

from django.db import transaction

from labeling.errors import LabelingError
from labeling.models import ComparisonBatch
from labeling.services.comparisons import comparison_batch_create, comparison_batch_set_runs
from training import presets
from training.errors import Invalid
from training.jobs.kinds import run_kind
from training.models import ModelVersion
from training.services.runs import run_create, run_enqueue
from webapp.queueing import QueueUnavailable

SAMPLING = ("max_new_tokens", "temperature", "top_k", "top_p", "seed")


def comparison_start(
    *, project, versions: list[ModelVersion], prompt_ids: list[int] | None = None,
    config: dict | None = None, preset: str = "tiny", votes_needed: int | None = None,
    reward_model: ModelVersion | None = None, created_by=None, request_token: str | None = None,
    enqueue_it: bool = True,
) -> ComparisonBatch:  # fmt: skip
    """A comparison batch and its sample runs, or `Invalid` saying what is wrong (nothing is
    created then). The same `request_token` (a double-clicked form) returns the first batch.
    With a `reward_model`, each run also records that model's score of every reply."""
    _check_versions(project, versions)
    config = presets.clean_config("sample", {**(config or {}), "comparison": None}, preset=preset)
    sampling = {name: config[name] for name in SAMPLING}
    token = request_token or uuid.uuid4().hex
    runs = []
    try:
        with transaction.atomic():
            batch = comparison_batch_create(
                project=project, versions={v.pk: v.name for v in versions}, request_token=token,
                prompt_ids=prompt_ids, votes_needed=votes_needed, sampling=sampling,
                created_by=created_by,
            )  # fmt: skip
            if batch.run_ids:  # the same request again
                return batch
            for version in versions:
                runs.append(run_create(
                    kind="sample", project=project, config={**config, "comparison": batch.pk},
                    preset=preset, input_model=version, reward_model=reward_model,
                    created_by=created_by,
                    request_token=f"comparison-{batch.pk}-{version.pk}", enqueue_it=False,
                ))  # fmt: skip
            batch = comparison_batch_set_runs(
                batch_id=batch.pk, run_ids={r.input_model_id: r.pk for r in runs}
            )
            if enqueue_it:
                transaction.on_commit(lambda: _enqueue_all(runs))
    except LabelingError as exc:
        raise Invalid(exc.message) from None
    return batch


def _enqueue_all(runs) -> None:
    """Hand every run to a worker; with Redis down each becomes failed and resumable (not one
    left "queued" with nothing in the queue), and the first error is raised after."""
    errors = []
    for run in runs:
        try:
            run_enqueue(run)
        except QueueUnavailable as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


def _check_versions(project, versions: list[ModelVersion]) -> None:
    ids = [v.pk for v in versions]
    if len(set(ids)) != len(ids):
        raise Invalid("A version cannot be compared with itself: choose different versions.")
    if len(ids) < 2:
        raise Invalid("Choose at least two different model versions to compare.")
    for version in versions:
        if version.project_id not in (None, project.pk):
            raise Invalid(f"{version.name} belongs to another project.")
        if version.kind not in run_kind("sample").takes:
            raise Invalid(f"{version.name} is a {version.get_kind_display()}: it writes no "
                          "replies. Compare base, SFT or policy versions.")
