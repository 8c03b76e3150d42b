"""The run page's pace (elapsed, speed, ETA) and its warnings: a reward model under the
longer-reply baseline, a DPO policy below chance on held-out pairs, PPO's score flat, KL past
its budget, a loss that is not finite."""
from datetime import timedelta

import pytest
from django.utils import timezone

from training.models import ModelVersion, TrainingRun
from training.run_health import run_pace, run_warnings


def run_of(kind, **fields):
    """An unsaved run row: the functions read its fields only."""
    return TrainingRun(kind=kind, status=fields.pop("status", "running"), **fields)


def test_pace_gives_elapsed_speed_and_eta():
    now = timezone.now()
    run = run_of("sft", started_at=now - timedelta(minutes=2), step=20, total=60)
    pace = run_pace(run, now=now)
    assert (pace.elapsed_s, pace.steps_per_min, pace.eta_s) == (120, 10, 240)
    assert run_pace(run_of("sft"), now=now) is None  # not started


def test_a_reward_model_or_dpo_policy_under_the_longer_reply_baseline_is_flagged():
    run = run_of("reward", metrics={"val_accuracy": 0.55, "val_length_baseline_accuracy": 0.7})
    [warning] = run_warnings(run, {})
    assert "below the longer-reply baseline 0.70" in warning
    good = run_of("reward", metrics={"val_accuracy": 0.8, "val_length_baseline_accuracy": 0.6})
    assert run_warnings(good, {}) == []
    dpo = run_of("dpo", metrics={"val_accuracy": 0.6, "val_length_baseline_accuracy": 0.75})
    [warning] = run_warnings(dpo, {})
    assert "the DPO policy may prefer long replies" in warning


def test_a_dpo_policy_below_chance_on_held_out_pairs_is_flagged_with_a_remedy():
    run = run_of("dpo", metrics={"val_accuracy": 0.35}, config={"epochs": 16})
    [warning] = run_warnings(run, {})
    assert "0.35 is below chance" in warning and "keep_best" in warning
    kept = run_of("dpo", metrics={"val_accuracy": 0.35}, config={"keep_best": True})
    [warning] = run_warnings(kept, {})
    assert "fewer epochs or a lower learning rate" in warning
    assert run_warnings(run_of("dpo", metrics={"val_accuracy": 0.86}), {}) == []
    assert run_warnings(run_of("dpo", metrics={}), {}) == []  # not evaluated yet


def test_below_chance_in_iterated_dpo_points_to_the_rounds_evaluation_not_fewer_epochs():
    """Starting from a policy, its reference, DPO's held-out accuracy was measured below chance
    while the policy still won: the page says so rather than prescribing fewer epochs."""
    run = run_of("dpo", metrics={"val_accuracy": 0.38}, input_model=ModelVersion(kind="policy"))
    [warning] = run_warnings(run, {})
    assert "0.38 is below chance" in warning and "iterated DPO" in warning
    assert "evaluation against its parent" in warning and "fewer epochs" not in warning
    from_sft = run_of("dpo", metrics={"val_accuracy": 0.38}, input_model=ModelVersion(kind="sft"))
    assert "fewer epochs" in run_warnings(from_sft, {})[0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None, "NaN"])
def test_a_loss_that_is_not_finite_is_flagged(bad):
    [warning] = run_warnings(run_of("sft", metrics={"loss": bad}), {})
    assert "loss is not finite" in warning


def test_ppo_flat_score_and_kl_past_budget_are_flagged():
    flat = {"score": [(i, 0.5 + 0.01 * (i % 2)) for i in range(9)], "kl": [(8, 3.0)]}
    run = run_of("ppo", config={"kl_budget": 2.0, "target_kl": 6.0})
    warnings = run_warnings(run, flat)
    assert any("score has not risen" in w for w in warnings)
    assert any("past its budget 2.0" in w for w in warnings)
    rising = {"score": [(i, 0.1 * i) for i in range(9)], "kl": [(8, 1.0)]}
    assert run_warnings(run, rising) == []
