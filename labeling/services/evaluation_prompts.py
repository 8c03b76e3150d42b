"""Held-out evaluation prompts: marked by staff (admin action, import option, a random share at
project setup). An evaluation prompt never trains anything: the training snapshots, sampling for
ranking and the demonstration queue all leave it out, so a human comparison on it measures how
the models do on prompts they have never seen."""
import random

from django.db import transaction

from labeling.errors import Invalid
from labeling.models import Project, Prompt, RankingTask
from labeling.services.ranking_tasks import ranking_tasks_cancel


def evaluation_share_pick(prompt_ids: list[int], *, share: float, seed: int) -> list[int]:
    """A seeded random `share` of the ids (at least one when the share is above zero)."""
    if not 0 <= share <= 1:
        raise Invalid("The evaluation share is a fraction from 0 to 1.")
    if share == 0 or not prompt_ids:
        return []
    count = max(1, round(share * len(prompt_ids)))
    return sorted(random.Random(seed).sample(sorted(prompt_ids), count))


@transaction.atomic
def prompts_mark_evaluation(
    *, project: Project, prompt_ids: list[int] | None = None, share: float | None = None,
    seed: int = 0, is_evaluation: bool = True,
) -> int:
    """Mark prompts of `project` as held out (or back in, with `is_evaluation=False`): the ids
    given, or a seeded random `share` of its training prompts. Open ranking tasks of newly held
    out prompts are withdrawn (their rankings would never be used). Returns how many changed."""
    if (prompt_ids is None) == (share is None):
        raise Invalid("Give either the prompts to mark or a share of the project's prompts.")
    prompts = Prompt.objects.filter(project=project, duplicate_of__isnull=True)
    if share is not None:
        candidates = list(prompts.filter(is_evaluation=False).values_list("id", flat=True))
        prompt_ids = evaluation_share_pick(candidates, share=share, seed=seed)
    changed = list(
        prompts.filter(pk__in=prompt_ids).exclude(is_evaluation=is_evaluation)
        .values_list("id", flat=True)
    )  # fmt: skip
    Prompt.objects.filter(pk__in=changed).update(is_evaluation=is_evaluation)
    if is_evaluation and changed:
        open_tasks = RankingTask.objects.filter(
            prompt_id__in=changed, status=RankingTask.Status.OPEN
        ).values_list("id", flat=True)
        ranking_tasks_cancel(task_ids=list(open_tasks))
    return len(changed)
