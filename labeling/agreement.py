"""How much labelers agree when they rank the same task (for staff).

- Kendall's tau-b between two labelers' orders of one task: +1 same order, -1 reversed; ties
  (a group of several ids) are handled by the tau-b correction.
- Krippendorff's alpha over the whole project: units are (task, completion), values are the
  completion's mid-rank in each labeler's order (1 = best; a tie shares the mean rank); the
  ordinal metric by default. 1 = perfect agreement, 0 = chance, < 0 = systematic disagreement.

The pure functions take orders as lists of groups of ids (the `Ranking.order` shape);
`project_agreement` reads the rankings through `labeling.exports.ranking_groups`.
"""
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from itertools import combinations

from django.contrib.auth import get_user_model
from django.utils import timezone

from labeling.exports import ranking_groups


def midranks(order: list[list[int]]) -> dict[int, float]:
    """{id: rank}, 1-based; a tied group shares the mean of the ranks it spans."""
    ranks, start = {}, 1
    for group in order:
        shared = start + (len(group) - 1) / 2
        for item in group:
            ranks[item] = shared
        start += len(group)
    return ranks


def kendall_tau_b(a: list[list[int]], b: list[list[int]]) -> float | None:
    """Tau-b over the ids both orders rank; None when it is undefined (all tied, < 2 ids)."""
    ra, rb = midranks(a), midranks(b)
    items = sorted(set(ra) & set(rb))
    concordant = discordant = tied_a = tied_b = 0
    for x, y in combinations(items, 2):
        da, db = ra[x] - ra[y], rb[x] - rb[y]
        if da == 0 and db == 0:
            tied_a += 1
            tied_b += 1
        elif da == 0:
            tied_a += 1
        elif db == 0:
            tied_b += 1
        elif (da > 0) == (db > 0):
            concordant += 1
        else:
            discordant += 1
    n0 = len(items) * (len(items) - 1) // 2
    denominator = math.sqrt((n0 - tied_a) * (n0 - tied_b))
    return None if denominator == 0 else (concordant - discordant) / denominator


def krippendorff_alpha(units: list[list[float]], metric: str = "ordinal") -> float | None:
    """Alpha from the values each unit received (one per labeler who rated it). Units with fewer
    than two values carry no information and are dropped. None when undefined."""
    units = [u for u in units if len(u) >= 2]
    coincidence: dict[tuple[float, float], float] = defaultdict(float)
    for values in units:
        m = len(values)
        for i, j in ((i, j) for i in range(m) for j in range(m) if i != j):
            coincidence[values[i], values[j]] += 1 / (m - 1)
    totals: Counter = Counter()
    for (c, _), weight in coincidence.items():
        totals[c] += weight
    n = sum(totals.values())
    if n <= 1 or len(totals) < 2:
        return None
    delta = _metric(metric, totals)
    observed = sum(w * delta(c, k) for (c, k), w in coincidence.items()) / n
    expected = sum(
        totals[c] * totals[k] * delta(c, k) for c in totals for k in totals
    ) / (n * (n - 1))
    return None if expected == 0 else 1 - observed / expected


def _metric(name: str, totals: Counter):
    if name == "interval":
        return lambda c, k: (c - k) ** 2
    if name != "ordinal":
        raise ValueError(f"metric is ordinal or interval, not {name!r}")
    values = sorted(totals)
    position = {v: i for i, v in enumerate(values)}
    cumulative = [0.0]
    for v in values:
        cumulative.append(cumulative[-1] + totals[v])

    def ordinal(c, k):
        lo, hi = sorted((position[c], position[k]))
        if lo == hi:
            return 0.0
        between = cumulative[hi + 1] - cumulative[lo]
        return (between - (totals[values[lo]] + totals[values[hi]]) / 2) ** 2

    return ordinal


@dataclass
class LabelerAgreement:
    labeler_id: int
    username: str
    rankings: int
    overlapping_tasks: int
    mean_tau: float | None  # with the other labelers of the same tasks
    # Alpha over the tasks this labeler shared with others (everyone's ranks on those tasks):
    # low when this labeler's tasks are where the disagreement is.
    alpha: float | None = None


@dataclass
class AgreementReport:
    tasks_ranked: int
    tasks_with_overlap: int
    mean_tau: float | None
    alpha: float | None
    labelers: list[LabelerAgreement] = field(default_factory=list)
    pairs: list[dict] = field(default_factory=list)  # {a, b, tasks, mean_tau}

    def as_dict(self) -> dict:
        return asdict(self)


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def project_agreement(*, project, as_of=None) -> AgreementReport:
    """Pairwise tau per shared task, averaged per labeler and per pair; alpha overall."""
    as_of = as_of or timezone.now()
    taus: dict[int, list[float | None]] = defaultdict(list)
    pair_taus: dict[tuple[int, int], list[float | None]] = defaultdict(list)
    counts: Counter = Counter()
    overlapping: Counter = Counter()
    units: list[list[float]] = []
    labeler_units: dict[int, list[list[float]]] = defaultdict(list)
    tasks = with_overlap = 0
    for group in ranking_groups(project=project, as_of=as_of):
        tasks += 1
        rankings = group["rankings"]
        for r in rankings:
            counts[r["labeler_id"]] += 1
        if len(rankings) < 2:
            continue
        with_overlap += 1
        ranks = [midranks(r["order"]) for r in rankings]
        task_units = [
            [rk[completion["id"]] for rk in ranks if completion["id"] in rk]
            for completion in group["completions"]
        ]
        units.extend(task_units)
        for r in rankings:
            overlapping[r["labeler_id"]] += 1
            labeler_units[r["labeler_id"]].extend(task_units)
        for x, y in combinations(rankings, 2):
            tau = kendall_tau_b(x["order"], y["order"])
            a, b = sorted((x["labeler_id"], y["labeler_id"]))
            pair_taus[a, b].append(tau)
            taus[a].append(tau)
            taus[b].append(tau)
    names = dict(
        get_user_model().objects.filter(pk__in=list(counts)).values_list("pk", "username")
    )
    all_taus = [t for values in pair_taus.values() for t in values]
    return AgreementReport(
        tasks_ranked=tasks,
        tasks_with_overlap=with_overlap,
        mean_tau=_mean(all_taus),
        alpha=krippendorff_alpha(units),
        labelers=[
            LabelerAgreement(pk, names.get(pk, "?"), counts[pk], overlapping[pk], _mean(taus[pk]),
                             krippendorff_alpha(labeler_units[pk]))
            for pk in sorted(counts, key=lambda pk: names.get(pk, ""))
        ],
        pairs=[
            {"a": names.get(a), "b": names.get(b), "tasks": len(v), "mean_tau": _mean(v)}
            for (a, b), v in sorted(pair_taus.items())
        ],
    )
