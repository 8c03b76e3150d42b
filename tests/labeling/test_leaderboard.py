"""The leaderboard's statistics on simulated votes (pure numpy, no database): the fit recovers
known strengths, the bootstrap intervals cover the truth about 95% of the time, ties count half,
and the win-rate matrix, position bias, Likert means and agreement count what they say."""
import numpy as np
import pytest

from labeling.leaderboard import (
    VoteArrays,
    agreement,
    dense_index,
    fit_bradley_terry,
    leaderboard,
    outcome_codes,
    pair_counts,
)


def simulate(true, votes, rng, *, ties=0.0):
    """Votes between random pairs with P(a wins) = sigmoid(s_a - s_b); with `ties`, a share of
    close calls are ties, drawn so that a's expected score (a tie: half) stays that P."""
    n = len(true)
    a = rng.integers(0, n, votes)
    b = (a + rng.integers(1, n, votes)) % n
    p = 1 / (1 + np.exp(-(true[a] - true[b])))
    tie = ties * np.minimum(p, 1 - p)
    u = rng.random(votes)
    outcome = np.where(u < tie, 2, np.where(u < tie + p - tie / 2, 0, 1))
    return VoteArrays(a, b, outcome)


def test_the_fit_recovers_known_strengths():
    rng = np.random.default_rng(0)
    true = np.array([-1.5, -0.5, 0.0, 0.4, 1.6])
    board = leaderboard(simulate(true, 40_000, rng, ties=0.4), bootstrap=0)
    assert np.abs(board.strength - (true - true.mean())).max() < 0.06
    assert [board.versions[i] for i in board.order()] == [4, 3, 2, 1, 0]


def test_the_95_percent_intervals_cover_the_truth_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    true = np.array([-0.8, -0.2, 0.3, 0.7])
    true = true - true.mean()
    covered = []
    for rep in range(60):
        board = leaderboard(simulate(true, 600, rng), bootstrap=200, seed=rep)
        covered.extend((board.low <= true) & (true <= board.high))
    rate = np.mean(covered)  # 240 intervals: 95% +- 2.8% (one standard error)
    assert 0.89 <= rate <= 0.99, rate


def test_a_tie_is_half_a_win_each():
    votes = VoteArrays([7, 7], [9, 9], outcome_codes(["tie", "both_bad"]))
    wins = pair_counts(votes).win_matrix()
    assert wins.tolist() == [[0, 1], [1, 0]]
    board = leaderboard(votes, bootstrap=20)
    assert np.allclose(board.strength, 0) and board.win_rate[0, 1] == 0.5 and board.ties == 2


def test_a_version_that_won_every_vote_stays_finite_and_on_top():
    votes = VoteArrays([1, 1, 1, 2], [2, 3, 3, 3], outcome_codes(["a", "a", "a", "b"]))
    board = leaderboard(votes, bootstrap=50)
    assert np.isfinite(board.strength).all() and np.isfinite(board.low).all()
    assert board.rows()[0]["version_id"] == 1 and board.rows()[-1]["version_id"] == 2


def test_batched_fits_equal_single_fits():
    rng = np.random.default_rng(2)
    wins = rng.integers(0, 30, (3, 5, 5)).astype(float) * (1 - np.eye(5))
    batched = fit_bradley_terry(wins)
    for k in range(3):
        assert np.allclose(batched[k], fit_bradley_terry(wins[k]), atol=1e-8)


def test_win_rates_position_bias_and_likert():
    votes = VoteArrays(
        version_a=[1, 1, 2, 2, 1], version_b=[2, 2, 1, 1, 2],
        outcome=outcome_codes(["a", "a", "a", "b", "tie"]),
        likert_a=[7, 6, np.nan, 3, 5], likert_b=[2, np.nan, 4, 6, 5],
    )  # fmt: skip
    board = leaderboard(votes, bootstrap=10)
    # Version 1 beat 2 in votes 1, 2 and 4 (4: 2 was on the left and lost), tied once.
    assert board.win_rate[0, 1] == pytest.approx(3.5 / 5)
    assert board.position.value == pytest.approx(3 / 4) and board.position.n == 4
    one, two = board.likert
    assert one.n == 5 and one.value == pytest.approx((7 + 6 + 4 + 6 + 5) / 5)
    assert two.n == 3 and two.value == pytest.approx((2 + 3 + 5) / 3)
    assert one.low < one.value < one.high


def test_the_share_of_replies_given_each_label():
    votes = VoteArrays(version_a=[1, 1, 2], version_b=[2, 2, 1], outcome=outcome_codes("aab"),
                       flags_a=[0b01, 0b11, 0], flags_b=[0, 0b10, 0b10])  # fmt: skip
    board = leaderboard(votes, bootstrap=0, flag_names=("made_up_facts", "harmful"))
    # Version 1 wrote 3 replies: flagged "made up facts" twice, "harmful" twice.
    assert board.flags["made_up_facts"].tolist() == [2 / 3, 0.0]
    assert board.flags["harmful"].tolist() == [2 / 3, 1 / 3]
    assert board.rows()[0]["flags"] == {"made_up_facts": 0.6667, "harmful": 0.6667}


def test_agreement_counts_pairs_of_votes_on_the_same_comparison():
    votes = VoteArrays(
        version_a=[1] * 6, version_b=[2] * 6, task=[10, 10, 10, 11, 11, -1],
        outcome=outcome_codes(["a", "a", "b", "tie", "both_bad", "a"]),
    )  # fmt: skip
    found = agreement(votes)
    assert (found.pairs, found.agreeing) == (3 + 1, 1)


@pytest.mark.parametrize("values", [[5, 3, 5, 9, 0], [10**12, 7, 7], [-1, 4, -1]])
def test_dense_index_is_np_unique(values):
    values = np.array(values)
    found, expected = dense_index(values), np.unique(values, return_inverse=True)
    assert found[0].tolist() == expected[0].tolist() and found[1].tolist() == expected[1].tolist()


def test_no_votes_no_board():
    assert leaderboard(VoteArrays([], [], [])) is None
