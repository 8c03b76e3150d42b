"""The leaderboard of model versions from blind pairwise votes: plain numpy, no Django.

    board = leaderboard(VoteArrays(version_a=..., version_b=..., outcome=...), bootstrap=200)
    board.rows()      # versions best first: strength, Elo-scale rating, 95% interval, games

- **Bradley-Terry** (as the Chatbot Arena leaderboard): P(i beats j) = sigmoid(s_i - s_j),
  fitted by maximum likelihood over every vote, a tie (or "both bad") counting half a win to
  each side. The votes are first summed into a win matrix W (W[i, j]: wins of i over j), so a
  fit costs O(versions^2) whatever the number of votes; Newton's method on the concave
  log-likelihood converges in a handful of steps. A tiny ridge keeps a version that won every
  vote finite and fixes the origin (mean strength 0); at real vote counts it moves nothing.
- **Bootstrap 95% intervals**: resampling votes with replacement is a multinomial draw over
  the cells (pair, outcome) with the observed shares, so all resamples are drawn at once and
  fitted together, batched (`bench/bench_leaderboard.py`: 50 versions, a million votes, 200
  resamples).
- The win-rate matrix, Likert means with normal-approximation intervals, the share of each
  version's replies given each per-reply label (InstructGPT's "makes up facts", ...), position
  bias (how often the left reply wins a decisive vote) and agreement between labelers voting
  on the same comparison.
"""
from dataclasses import dataclass, field

import numpy as np

OUTCOMES = ("a", "b", "tie", "both_bad")  # codes 0..3 in `VoteArrays.outcome`
RIDGE = 1e-4
Z95 = 1.959964
ELO_SCALE, ELO_BASE = 400 / np.log(10), 1000.0


@dataclass
class VoteArrays:
    """One entry per vote. `version_a` was shown on the left. `task` groups the votes cast on
    the same comparison (-1: none, e.g. an arena vote); Likert scores are NaN when not given;
    `flags_a` / `flags_b` are bit masks of per-reply labels (bit k: the k-th name given to
    `leaderboard(flag_names=...)`)."""

    version_a: np.ndarray
    version_b: np.ndarray
    outcome: np.ndarray
    task: np.ndarray | None = None
    likert_a: np.ndarray | None = None
    likert_b: np.ndarray | None = None
    flags_a: np.ndarray | None = None
    flags_b: np.ndarray | None = None

    def __post_init__(self):
        self.version_a = np.asarray(self.version_a, dtype=np.int64)
        self.version_b = np.asarray(self.version_b, dtype=np.int64)
        self.outcome = np.asarray(self.outcome, dtype=np.int64)
        n = len(self.outcome)
        self.task = np.full(n, -1) if self.task is None else np.asarray(self.task, np.int64)
        nan = np.full(n, np.nan)
        self.likert_a = nan if self.likert_a is None else np.asarray(self.likert_a, float)
        self.likert_b = nan if self.likert_b is None else np.asarray(self.likert_b, float)
        zero = np.zeros(n, dtype=np.int64)
        self.flags_a = zero if self.flags_a is None else np.asarray(self.flags_a, np.int64)
        self.flags_b = zero if self.flags_b is None else np.asarray(self.flags_b, np.int64)


def outcome_codes(outcomes) -> np.ndarray:
    """["a", "tie", ...] -> [0, 2, ...]."""
    index = {name: code for code, name in enumerate(OUTCOMES)}
    return np.array([index[o] for o in outcomes], dtype=np.int64)


@dataclass
class PairCounts:
    """Votes summed per unordered pair (i < j, as indices into `versions`): i won, j won, tie."""

    versions: np.ndarray
    i: np.ndarray
    j: np.ndarray
    counts: np.ndarray  # (pairs, 3)

    def win_matrix(self, counts: np.ndarray | None = None) -> np.ndarray:
        """W[..., i, j]: wins of i over j, ties half each; `counts` (..., pairs, 3) resampled."""
        counts = self.counts if counts is None else counts
        n = len(self.versions)
        wins = np.zeros(counts.shape[:-2] + (n, n))
        wins[..., self.i, self.j] = counts[..., 0] + 0.5 * counts[..., 2]
        wins[..., self.j, self.i] = counts[..., 1] + 0.5 * counts[..., 2]
        return wins


def dense_index(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, each value's position among them), as `np.unique(...,
    return_inverse=True)`; database ids are small non-negative integers, so a table lookup
    does it in linear time instead of a sort (4x faster on a million votes)."""
    if len(values) and values.min() >= 0 and values.max() < 8 * len(values) + 1024:
        present = np.zeros(values.max() + 1, dtype=bool)
        present[values] = True
        position = np.cumsum(present) - 1
        return np.flatnonzero(present), position[values]
    return np.unique(values, return_inverse=True)


def pair_counts(votes: VoteArrays) -> PairCounts:
    versions, index = dense_index(np.concatenate([votes.version_a, votes.version_b]))
    a, b = index[: len(votes.outcome)], index[len(votes.outcome) :]
    low, high = np.minimum(a, b), np.maximum(a, b)
    a_won = votes.outcome == 0
    b_won = votes.outcome == 1
    low_won = (a_won & (a == low)) | (b_won & (b == low))
    high_won = (a_won & (a == high)) | (b_won & (b == high))
    category = np.where(low_won, 0, np.where(high_won, 1, 2))
    n = len(versions)
    cells = np.bincount((low * n + high) * 3 + category, minlength=n * n * 3).reshape(n * n, 3)
    pairs = np.flatnonzero(cells.sum(axis=1))
    return PairCounts(versions, pairs // n, pairs % n, cells[pairs].astype(float))


def fit_bradley_terry(wins: np.ndarray, *, ridge: float = RIDGE, steps: int = 100) -> np.ndarray:
    """Strengths s (..., n), mean 0, maximizing sum W[i,j] log sigmoid(s_i - s_j) - ridge |s|^2
    for every leading (batch) index of `wins` (..., n, n) at once."""
    games = wins + np.swapaxes(wins, -1, -2)
    n = wins.shape[-1]
    strength = np.zeros(wins.shape[:-1])
    eye = np.eye(n)
    for _ in range(steps):
        diff = strength[..., :, None] - strength[..., None, :]
        p = 1.0 / (1.0 + np.exp(-diff))  # P(i beats j)
        gradient = (wins - games * p).sum(axis=-1) - 2 * ridge * strength
        curvature = games * p * (1 - p)
        # The negative Hessian: a weighted graph Laplacian plus the ridge (positive definite).
        hessian = (curvature.sum(axis=-1)[..., None] * eye - curvature) + 2 * ridge * eye
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        # A long step far from the optimum (a version that won every vote) is cut to 2 nats.
        step *= np.minimum(1.0, 2.0 / np.maximum(np.abs(step).max(axis=-1, keepdims=True), 1e-12))
        strength = strength + step
        if np.abs(step).max() < 1e-9:
            break
    return strength - strength.mean(axis=-1, keepdims=True)


def bootstrap_strengths(pairs: PairCounts, *, rounds: int, seed: int = 0) -> np.ndarray:
    """(rounds, n) strengths fitted on resampled votes: one multinomial draw per round over the
    (pair, outcome) cells, i.e. the votes drawn again with replacement."""
    flat = pairs.counts.ravel()
    total = int(flat.sum())
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(total, flat / total, size=rounds)
    draws = draws.reshape((rounds,) + pairs.counts.shape)
    return fit_bradley_terry(pairs.win_matrix(draws.astype(float)))


@dataclass
class Interval:
    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return {"value": _num(self.value), "low": _num(self.low), "high": _num(self.high),
                "n": self.n}


@dataclass
class Agreement:
    """Pairs of votes by different labelers on the same comparison, and how many agree."""

    pairs: int
    agreeing: int

    @property
    def rate(self) -> float | None:
        return self.agreeing / self.pairs if self.pairs else None


@dataclass
class Leaderboard:
    versions: list[int]
    strength: np.ndarray
    low: np.ndarray
    high: np.ndarray
    games: np.ndarray
    wins: np.ndarray  # wins per version, ties half
    win_rate: np.ndarray  # (n, n): share of i's votes against j that i won; NaN: never met
    likert: list[Interval]
    flags: dict[str, np.ndarray]  # label -> (n,) share of each version's replies given it
    position: Interval  # share of decisive votes the left reply won
    ties: int
    agreement: Agreement
    votes: int
    names: dict[int, str] = field(default_factory=dict)

    @staticmethod
    def rating(strength) -> np.ndarray:
        """Strength (natural log-odds) on the familiar Elo scale: 400 points = 10:1 odds."""
        return ELO_BASE + ELO_SCALE * np.asarray(strength)

    def order(self) -> list[int]:
        return list(np.argsort(-self.strength, kind="stable"))

    def rows(self) -> list[dict]:
        rating = self.rating(self.strength)
        low, high = self.rating(self.low), self.rating(self.high)
        return [{
            "rank": rank, "version_id": self.versions[i],
            "name": self.names.get(self.versions[i], f"version {self.versions[i]}"),
            "strength": _num(self.strength[i]), "rating": _num(rating[i]),
            "rating_low": _num(low[i]), "rating_high": _num(high[i]),
            "games": int(self.games[i]), "wins": _num(self.wins[i]),
            "win_share": _num(self.wins[i] / self.games[i]) if self.games[i] else None,
            "likert": self.likert[i].as_dict(),
            "flags": {name: _num(share[i]) for name, share in self.flags.items()},
        } for rank, i in enumerate(self.order(), start=1)]  # fmt: skip

    def as_dict(self) -> dict:
        order = self.order()
        return {
            "votes": self.votes, "ties": self.ties, "rows": self.rows(),
            "win_rate": {
                "versions": [self.versions[i] for i in order],
                "matrix": [[_num(self.win_rate[i, j]) for j in order] for i in order],
            },
            "position_bias": self.position.as_dict(),
            "agreement": {"pairs": self.agreement.pairs, "agreeing": self.agreement.agreeing,
                          "rate": _num(self.agreement.rate)},
        }  # fmt: skip


def leaderboard(votes: VoteArrays, *, bootstrap: int = 200, seed: int = 0,
                names: dict[int, str] | None = None,
                flag_names: tuple[str, ...] = ()) -> Leaderboard | None:
    """Everything the leaderboard page shows; None before the first vote."""
    if len(votes.outcome) == 0:
        return None
    pairs = pair_counts(votes)
    wins = pairs.win_matrix()
    strength = fit_bradley_terry(wins)
    if bootstrap:
        samples = bootstrap_strengths(pairs, rounds=bootstrap, seed=seed)
        low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    else:
        low = high = np.full_like(strength, np.nan)
    games = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        win_rate = np.where(games > 0, wins / games, np.nan)
    versions = [int(v) for v in pairs.versions]
    decisive = votes.outcome <= 1
    return Leaderboard(
        versions=versions, strength=strength, low=low, high=high, games=games.sum(axis=1),
        wins=wins.sum(axis=1), win_rate=win_rate,
        likert=_likert(votes, pairs.versions),
        flags=_flag_shares(votes, pairs.versions, flag_names),
        position=share_interval(int((votes.outcome == 0).sum()), int(decisive.sum())),
        ties=int((~decisive).sum()), agreement=agreement(votes), votes=len(votes.outcome),
        names=names or {},
    )  # fmt: skip


def _likert(votes: VoteArrays, versions: np.ndarray) -> list[Interval]:
    """Per version: the mean overall score (1-7) its replies got, with a 95% interval."""
    version = np.concatenate([votes.version_a, votes.version_b])
    score = np.concatenate([votes.likert_a, votes.likert_b])
    given = ~np.isnan(score)
    index = np.searchsorted(versions, version[given])
    score = score[given]
    n = np.bincount(index, minlength=len(versions))
    total = np.bincount(index, weights=score, minlength=len(versions))
    squares = np.bincount(index, weights=score * score, minlength=len(versions))
    out = []
    for count, s, ss in zip(n, total, squares, strict=True):
        if count == 0:
            out.append(Interval(np.nan, np.nan, np.nan, 0))
            continue
        mean = s / count
        variance = max(ss - count * mean * mean, 0.0) / (count - 1) if count > 1 else np.nan
        half = Z95 * np.sqrt(variance / count)
        out.append(Interval(mean, mean - half, mean + half, int(count)))
    return out


def _flag_shares(votes: VoteArrays, versions: np.ndarray, names) -> dict[str, np.ndarray]:
    """Per label: the share of each version's judged replies that were given it."""
    index = np.searchsorted(versions, np.concatenate([votes.version_a, votes.version_b]))
    masks = np.concatenate([votes.flags_a, votes.flags_b])
    replies = np.bincount(index, minlength=len(versions))
    return {
        name: np.bincount(index, weights=(masks >> bit) & 1, minlength=len(versions)) / replies
        for bit, name in enumerate(names)
    }


def share_interval(k: float, n: int) -> Interval:
    """A proportion k / n (k may count ties as halves) with its Wilson 95% interval."""
    if n == 0:
        return Interval(np.nan, np.nan, np.nan, 0)
    p = k / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return Interval(p, centre - half, centre + half, n)


def agreement(votes: VoteArrays) -> Agreement:
    """Over comparisons voted on more than once: pairs of votes, and pairs with the same verdict
    ("both bad" and "tie" are different verdicts)."""
    on_task = votes.task >= 0
    if not on_task.any():
        return Agreement(0, 0)
    tasks, index = dense_index(votes.task[on_task])
    cells = index * len(OUTCOMES) + votes.outcome[on_task]
    per_outcome = np.bincount(cells, minlength=len(tasks) * len(OUTCOMES)).reshape(
        len(tasks), len(OUTCOMES)
    )
    per_task = per_outcome.sum(axis=1)
    pairs = int((per_task * (per_task - 1) // 2).sum())
    agreeing = int((per_outcome * (per_outcome - 1) // 2).sum())
    return Agreement(pairs, agreeing)


def _num(value):
    """A float for JSON (None for NaN), rounded to what a person reads."""
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), 4)
