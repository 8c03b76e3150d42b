"""Builders for blind comparisons in tests (import as `from comparison_factories import ...`):
evaluation prompts, a batch and every version's replies, through the services."""
import itertools

from labeling_factories import make_prompt

from labeling.services.comparisons import comparison_batch_create, comparison_replies_add
from labeling.services.evaluation_prompts import prompts_mark_evaluation

VERSIONS = {101: "sft-alpha", 202: "policy-beta", 303: "policy-gamma"}
_seq = itertools.count(1)


def evaluation_prompts(project, n):
    prompts = [make_prompt(project) for _ in range(n)]
    prompts_mark_evaluation(project=project, prompt_ids=[p.pk for p in prompts])
    return prompts


def make_comparison(project, *, versions=None, prompts=2, votes_needed=1):
    """A batch of `versions` on `prompts` new evaluation prompts, every reply pushed: one task
    per pair of versions per prompt."""
    versions = versions or dict(list(VERSIONS.items())[:2])
    evaluation_prompts(project, prompts)
    batch = comparison_batch_create(project=project, versions=versions,
                                    request_token=f"req-{next(_seq)}", votes_needed=votes_needed)
    for number, version_id in enumerate(versions, start=1):
        comparison_replies_add(batch_id=batch.pk, version_id=version_id, replies=[
            (p.pk, f"Answer {number} to {p.text}", {"seed": 1}) for p in batch.prompts.all()
        ])  # fmt: skip
    return batch
