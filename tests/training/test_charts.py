"""The run page's charts: a reward run shows its held-out accuracy beside the longer-reply
baseline on the same pairs, so a reward model that only learned "longer wins" is seen at once."""

from training.charts import run_charts


def test_a_reward_run_charts_held_out_accuracy_beside_the_longer_reply_baseline():
    curves = {
        "loss": [(1, 0.69), (10, 0.4), (20, 0.1)],
        "accuracy": [(1, 0.5), (10, 0.8), (20, 0.97)],
        "val_accuracy": [(10, 0.62), (20, 0.6)],
        "val_length_baseline_accuracy": [(10, 0.58), (20, 0.58)],
    }
    charts = [str(chart) for chart in run_charts("reward", curves)]
    [held_out] = [c for c in charts if 'aria-label="held-out accuracy"' in c]
    assert "<title>val_accuracy</title>" in held_out
    assert "<title>val_length_baseline_accuracy</title>" in held_out
    assert not any("val_accuracy" in c for c in charts if c is not held_out)
