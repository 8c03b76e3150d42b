"""What the run page says besides the progress bar: elapsed time, speed and ETA, and the
warnings a person watching would want (read-only, from the run row and its curves).

Warnings:
- a loss that is not finite (the run diverged);
- a reward model (or a DPO policy) whose held-out accuracy is below the "longer reply wins"
  baseline on the same pairs (it may have learned length, not quality);
- a DPO policy that orders fewer than half of the held-out pairs the labelers' way (its implicit
  reward overfits the training pairs); when the run starts from a policy (iterated DPO), that
  the level is no verdict: measured below chance from the first evaluation on while the
  policies won 55-72% of held-out questions (`bench/bench_dpo_selection.py`, `training.ml.dpo`
  "Early stopping");
- PPO whose mean score has not risen (the last third of its iterations against the first);
- PPO's KL past the run's budget (updates are skipped) or far above its target.
"""
import math
from dataclasses import dataclass
from statistics import mean

MIN_POINTS_FOR_TREND = 6


@dataclass
class Pace:
    elapsed_s: float
    steps_per_min: float | None
    eta_s: float | None


def run_pace(run, *, now) -> Pace | None:
    if run.started_at is None:
        return None
    elapsed = max(0.0, ((run.finished_at or now) - run.started_at).total_seconds())
    speed = run.step / (elapsed / 60) if run.step and elapsed else None
    eta = None
    if speed and run.total and not run.is_finished:
        eta = max(0.0, (run.total - run.step) / speed * 60)
    return Pace(elapsed, speed, eta)


def run_warnings(run, curves: dict[str, list[tuple[int, float]]]) -> list[str]:
    metrics = run.metrics or {}
    warnings = []
    bad = sorted(name for name, value in metrics.items()
                 if "loss" in name and not _finite(value))
    if bad:
        warnings.append(f"{', '.join(bad)} is not finite: the run diverged. Resume it with a "
                        "lower learning rate.")
    accuracy = metrics.get("val_accuracy")
    baseline = metrics.get("val_length_baseline_accuracy")
    judge = {"reward": "reward model", "dpo": "DPO policy"}.get(run.kind)
    if judge and _finite(accuracy) and _finite(baseline) and accuracy < baseline:
        warnings.append(
            f"Held-out accuracy {accuracy:.2f} is below the longer-reply baseline "
            f"{baseline:.2f}: the {judge} may prefer long replies rather than good ones. "
            "More rankings, or check the labelers' agreement.")
    if run.kind == "dpo" and _finite(accuracy) and accuracy < 0.5:
        warnings.append(_dpo_below_chance(run, accuracy))
    if run.kind == "ppo":
        warnings += _ppo_warnings(run, curves)
    return warnings


def _dpo_below_chance(run, accuracy: float) -> str:
    if run.input_model is not None and run.input_model.kind == "policy":
        return (f"Held-out preference accuracy {accuracy:.2f} is below chance, as it often is "
                "when DPO starts from a policy, its reference (iterated DPO): on the tiny "
                "model's second rounds it sat at 0.29-0.48 from the first evaluation on while "
                "the policies still won 55-72% of held-out questions. The level is no verdict "
                "on this policy; the round's evaluation against its parent is.")  # fmt: skip
    remedy = ("fewer epochs or a lower learning rate" if (run.config or {}).get("keep_best")
              else "keep_best with eval_every, or fewer epochs")  # fmt: skip
    return (f"Held-out preference accuracy {accuracy:.2f} is below chance: the policy orders "
            "most held-out pairs against the labelers, having fit its training pairs. Try "
            f"{remedy}.")


def _ppo_warnings(run, curves) -> list[str]:
    warnings = []
    scores = [v for _, v in curves.get("score", [])]
    if len(scores) >= MIN_POINTS_FOR_TREND:
        third = len(scores) // 3
        first, last = mean(scores[:third]), mean(scores[-third:])
        if last <= first:
            warnings.append(f"The reward model's score has not risen: {first:.3f} over the first "
                            f"third of the iterations, {last:.3f} over the last.")
    kls = [v for _, v in curves.get("kl", [])]
    if kls:
        kl, config = kls[-1], run.config or {}
        budget, target = config.get("kl_budget"), config.get("target_kl")
        if budget is not None and kl > budget:
            warnings.append(f"KL {kl:.2f} is past its budget {budget}: updates are skipped.")
        elif target and kl > 2 * target:
            warnings.append(f"KL {kl:.2f} is more than twice its target {target}: the policy is "
                            "drifting from the SFT model.")
    return warnings


def _finite(value) -> bool:
    if isinstance(value, bool) or value is None:
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
