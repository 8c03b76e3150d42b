"""The report `manage.py run_demo_round` prints after each round: the labelers, the policy
step's held-out figures, the evaluation table, how the rankings came out, the time by stage and
the lineage (plain text; the ML stack is imported only when a report is made)."""

from training.selectors import sample_labels


def round_report(*, rule, labelers: str, sample, rm, made, results, round_, timings) -> str:
    """`made`: the PPO or DPO run that made the policy; `rm` the reward model (None: DPO);
    `results` {title: evaluation or None}; `timings` {stage: seconds}."""
    from training.demo import headless as demo

    p = made.metrics
    trained = results["training prompts"]
    if rm is not None:
        m = rm.metrics
        step = [
            f"reward model held-out accuracy:    {m.get('val_accuracy', float('nan')):.3f} "
            f"(longer-reply baseline "
            f"{m.get('val_length_baseline_accuracy', float('nan')):.3f}{same_writer(m)}"
            f"{early_stopping(m)})",
            f"KL to SFT (nats per reply, last):  {p.get('kl', float('nan')):.3f}",
            *ppo_held_out(p),
        ]
        lineage = (f"{made.output_model.name} <- PPO #{made.pk} <- {rm.name} + "
                   f"{made.input_model.name} <- {made.input_model.parent.name}")  # fmt: skip
    else:
        step = [
            f"DPO held-out preference accuracy:  {p.get('val_accuracy', float('nan')):.3f} "
            f"(longer-reply baseline "
            f"{p.get('val_length_baseline_accuracy', float('nan')):.3f}, "
            f"implicit-reward margin {p.get('val_margin', float('nan')):+.3f}, "
            f"{p.get('val_pairs', 0):.0f} pairs{same_writer(p)}{early_stopping(p)})",
        ]
        lineage = (f"{made.output_model.name} <- DPO #{made.pk} <- "
                   f"{made.input_model.name} <- {made.input_model.parent.name}")  # fmt: skip
    width = max(map(len, timings)) + 2
    lines = [
        "",
        f"Round {round_.number}: {sample.input_model.name} -> {made.output_model.name}",
        f"Rule: {rule.description}",
        f"Labelers: {labelers}",
        *step,
        "evaluation (held-out prompts: the project's evaluation prompts, never trained on):",
        *demo.evaluation_table(rule, results),
        *(f"  Q: {q}\n    SFT:    {a}\n    policy: {b}"
          for q, a, b in (trained.examples if trained else [])),
        f"sampling throughput:               "
        f"{sample.metrics.get('completions_per_second', 0):.1f} "
        f"completions/s ({sample.metrics.get('ranking_tasks', 0)} tasks pushed)",
        *sample_rankings(sample),
        "",
        "time by stage:",
        *(f"  {name:<{width}} {seconds:7.1f} s" for name, seconds in timings.items()),
        f"  {'total':<{width}} {sum(timings.values()):7.1f} s",
        f"lineage: {lineage}",
    ]
    return "\n".join(lines)


def labeler_habits(noise: float, bt_scale: float | None, bt_ties: bool) -> str:
    """The report's "Labelers:" line: how the simulated labelers rank."""
    how = (
        f"rankings sampled Bradley-Terry from the scores (scale {bt_scale:g}"
        f"{', replies alike tied' if bt_ties else ''})"
        if bt_scale is not None
        else "sorted by score"
    )
    return f"{how}, {noise:.0%} of neighbouring places swapped at random"


def same_writer(metrics: dict) -> str:
    """The accuracy on pairs of one model's replies, when the tasks mixed two models' replies
    (`training.ml.reward.same_writer_figures`)."""
    if "val_same_writer_accuracy" not in metrics:
        return ""
    return (f"; {metrics['val_same_writer_accuracy']:.3f} on the "
            f"{metrics['val_same_writer_pairs']:.0f} pairs of one model's replies")  # fmt: skip


def early_stopping(metrics: dict) -> str:
    """"; the weights of step 20, stopped early at 40" (or "" when no weights were chosen)."""
    if "best_step" not in metrics:
        return ""
    stopped = metrics.get("stopped_early_at")
    return f"; the weights of step {metrics['best_step']:g}" + (
        f", stopped early at {stopped:g}" if stopped else ""
    )


def ppo_held_out(metrics: dict) -> list[str]:
    """PPO's reward on the held-out prompts after its last iteration, and with keep_best the
    iteration it kept ([] when the project had no evaluation prompt)."""
    if "heldout_score" not in metrics:
        return []
    line = (f"PPO reward on held-out prompts:    {metrics['heldout_score']:+.3f} at KL "
            f"{metrics['heldout_kl']:.3f} (last)")
    if "best_iteration" in metrics:
        line += (f"; kept iteration {metrics['best_iteration']:g} (best validation reward "
                 f"{metrics['best_val_score']:+.3f}): {metrics['best_heldout_score']:+.3f} at KL "
                 f"{metrics['best_heldout_kl']:.3f}")
    return [line]


def sample_rankings(sample) -> list[str]:
    """How many of the sampled tasks the labelers could tell apart, and with a second model, how
    its replies fared: a preference no reply shows leaves every task tied."""
    labels = sample_labels(sample)
    lines = [f"ranked tasks that prefer a reply:  {labels.preferring} of {labels.ranked} (the "
             f"rest tie every reply)"]  # fmt: skip
    if labels.agreement is not None:
        lines.append(f"labelers' agreement (tau-b):       {labels.agreement:.2f} on the "
                     f"{labels.agreement_tasks} tasks both ordered (1 same order, 0 chance)"
                     + (": close to chance" if labels.near_chance else ""))  # fmt: skip
    if (pairs := labels.pairs) is not None:
        lines.append(f"{labels.mix.name}'s replies over {sample.input_model.name}'s: "
                     f"{pairs.share_above:.0%} of {pairs.total} pairs (above {pairs.above}, "
                     f"below {pairs.below}, tied {pairs.tied})")  # fmt: skip
    return lines
