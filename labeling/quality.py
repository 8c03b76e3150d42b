"""Quality control reads (for staff): speeders, accuracy on gold tasks, exclusions in force.

- A *fast* ranking took less than `fast_fraction` of the project's median time per ranking or
  of the labeler's own median: far faster than the usual, too fast to have read K replies. A
  labeler with at least `min_rankings` timed rankings of which `speeder_share` or more were
  fast is a *speeder* (a consistently fast labeler is fast against the project; an
  occasionally careless one against their own habit).
- A ranking of a gold task is *correct* when the known best reply is in its top group and the
  known worst in its bottom group. A labeler with `min_gold` or more gold rankings and an
  accuracy under the project's `gold_min_accuracy` is flagged.
- Exclusions (`LabelerExclusion`) are applied by snapshots as of a moment: the ones in force at
  that moment (`excluded_labeler_ids`), so an old snapshot reads the same rows again.

Writes (gold answers, exclusions) are in `labeling.services.quality`.
"""
from dataclasses import dataclass
from datetime import datetime
from statistics import median

from django.db.models import Q, QuerySet

from labeling.models import LabelerExclusion, Project, Ranking, RankingTask


@dataclass(frozen=True)
class QualityRules:
    fast_fraction: float = 0.25
    speeder_share: float = 0.2
    min_rankings: int = 3
    min_gold: int = 3


RULES = QualityRules()


@dataclass
class LabelerQuality:
    labeler_id: int
    timed_rankings: int = 0
    fast_rankings: int = 0
    is_speeder: bool = False
    gold_rankings: int = 0
    gold_correct: int = 0
    gold_flagged: bool = False
    excluded: bool = False

    @property
    def fast_share(self) -> float | None:
        return self.fast_rankings / self.timed_rankings if self.timed_rankings else None

    @property
    def gold_accuracy(self) -> float | None:
        return self.gold_correct / self.gold_rankings if self.gold_rankings else None


def excluded_labeler_ids(*, project: Project, as_of: datetime) -> QuerySet:
    """Labelers whose rankings of the project a snapshot as of `as_of` leaves out."""
    return LabelerExclusion.objects.filter(
        Q(lifted_at__isnull=True) | Q(lifted_at__gt=as_of), project=project,
        created_at__lte=as_of,
    ).values("labeler_id")


def gold_correct(order: list[list[int]], *, best_id: int | None, worst_id: int | None) -> bool:
    """The known best reply in the top group and the known worst in the bottom one."""
    return (best_id is None or best_id in order[0]) and (worst_id is None or worst_id in order[-1])


def labeler_quality(*, project: Project, rules: QualityRules = RULES) -> dict[int, LabelerQuality]:
    """Per labeler who ranked in the project: speed and gold accuracy, and whether their
    rankings are excluded now."""
    rows: dict[int, LabelerQuality] = {}

    def row(labeler_id):
        return rows.setdefault(labeler_id, LabelerQuality(labeler_id))

    times: dict[int, list[int]] = {}
    for labeler_id, ms in Ranking.objects.filter(task__project=project, time_spent_ms__gt=0) \
            .values_list("labeler_id", "time_spent_ms"):
        times.setdefault(labeler_id, []).append(ms)
    if times:
        project_median = median(ms for values in times.values() for ms in values)
        for labeler_id, values in times.items():
            limit = rules.fast_fraction * max(project_median, median(values))
            q = row(labeler_id)
            q.timed_rankings = len(values)
            q.fast_rankings = sum(ms < limit for ms in values)
            q.is_speeder = (q.timed_rankings >= rules.min_rankings
                            and q.fast_share >= rules.speeder_share)
    gold = RankingTask.objects.filter(project=project).filter(
        Q(gold_best__isnull=False) | Q(gold_worst__isnull=False)
    )
    for labeler_id, order, best, worst in Ranking.objects.filter(task__in=gold).values_list(
        "labeler_id", "order", "task__gold_best_id", "task__gold_worst_id"
    ):
        q = row(labeler_id)
        q.gold_rankings += 1
        q.gold_correct += gold_correct(order, best_id=best, worst_id=worst)
    for q in rows.values():
        q.gold_flagged = (q.gold_rankings >= rules.min_gold
                          and q.gold_accuracy < project.gold_min_accuracy)
    for labeler_id in LabelerExclusion.objects.filter(project=project, lifted_at__isnull=True) \
            .values_list("labeler_id", flat=True):
        row(labeler_id).excluded = True
    return rows
