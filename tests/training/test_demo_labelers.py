"""Simulated labelers: sorted and noiseless they always give the preference's order; noise and
Bradley-Terry sampling disagree with it at the rates they promise (seeded, many draws)."""

import math
from types import SimpleNamespace

import pytest

from training.demo.labelers import SimulatedLabeler
from training.demo.rules import PREFERENCES

RETURNS = PREFERENCES["returns"]
DRAWS = 4000  # the rate's standard error at 0.1 is 0.005: the bounds below are 4 of them


def replies(*texts):
    return [SimpleNamespace(pk=i, text=t) for i, t in enumerate(texts)]


GOOD_BAD = replies("It returns a list.", "It removes a file.")


def reversed_share(labeler, completions=GOOD_BAD):
    return sum(labeler.rank(completions, None)[0] == [1] for _ in range(DRAWS)) / DRAWS


def test_without_noise_the_ranking_is_the_preference_order_every_time():
    completions = replies("removes it", "returns a list", "returned x", "hm")
    labeler = SimulatedLabeler(RETURNS, seed=3)
    assert all(labeler.rank(completions, None) == [[1, 2], [0, 3]] for _ in range(200))


def test_noise_reverses_that_share_of_two_reply_rankings():
    assert reversed_share(SimulatedLabeler(RETURNS, noise=0.1, seed=0)) == pytest.approx(
        0.1, abs=0.02
    )
    assert reversed_share(SimulatedLabeler(RETURNS, noise=0.3, seed=1)) == pytest.approx(
        0.3, abs=0.03
    )


def test_noise_swaps_neighbours_and_keeps_every_reply_once():
    completions = replies("a", "b returns", "c", "d returned")
    labeler = SimulatedLabeler(RETURNS, noise=0.5, seed=2)
    seen = {tuple(map(tuple, labeler.rank(completions, None))) for _ in range(200)}
    assert seen == {((1, 3), (0, 2)), ((0, 2), (1, 3))}  # tied groups move as one


def test_bradley_terry_ranks_the_better_reply_first_at_the_sigmoid_of_the_score_gap():
    labeler = SimulatedLabeler(RETURNS, bt_scale=2.0, seed=0)
    expected_reversed = 1 - 1 / (1 + math.exp(-2.0))  # 0.119
    assert reversed_share(labeler) == pytest.approx(expected_reversed, abs=0.02)
    ranking = labeler.rank(replies("returns", "x", "returned", "y"), None)
    assert sorted(pk for group in ranking for pk in group) == [0, 1, 2, 3]
    assert all(len(group) == 1 for group in ranking)  # a full order: ties broken at random


def test_bradley_terry_with_ties_keeps_alike_replies_tied_and_orders_the_groups_by_the_sigmoid():
    labeler = SimulatedLabeler(RETURNS, bt_scale=2.0, bt_ties=True, seed=0)
    completions = replies("returns", "x", "returned", "y")
    rankings = [labeler.rank(completions, None) for _ in range(DRAWS)]
    assert {tuple(map(tuple, r)) for r in rankings} == {((0, 2), (1, 3)), ((1, 3), (0, 2))}
    reversed_share = sum(r[0] == [1, 3] for r in rankings) / DRAWS
    assert reversed_share == pytest.approx(1 - 1 / (1 + math.exp(-2.0)), abs=0.02)


def test_bradley_terry_with_ties_over_three_levels_keeps_each_level_whole():
    plain = PREFERENCES["plain"]  # 2: no jargon, 1: one jargon word, 0: more
    completions = replies("a list", "an iterable", "an iterable of iterators", "a dict")
    labeler = SimulatedLabeler(plain, bt_scale=1.0, bt_ties=True, seed=4)
    seen = {tuple(map(tuple, labeler.rank(completions, None))) for _ in range(500)}
    assert len(seen) == 6  # every order of the three levels turns up, each level one group
    assert all(sorted(map(tuple, order)) == [(0, 3), (1,), (2,)] for order in seen)


def test_bradley_terry_and_noise_are_reproducible_from_the_seed():
    def draws(seed):
        labeler = SimulatedLabeler(RETURNS, noise=0.2, bt_scale=1.0, seed=seed)
        return [labeler.rank(replies("returns", "x", "returned", "y"), None) for _ in range(50)]

    assert draws(7) == draws(7) != draws(8)


@pytest.mark.parametrize(
    "settings", [{"noise": -0.1}, {"noise": 1.5}, {"bt_scale": -1.0}, {"bt_ties": True}]
)
def test_settings_out_of_range_are_refused(settings):
    with pytest.raises(ValueError):
        SimulatedLabeler(RETURNS, **settings)
