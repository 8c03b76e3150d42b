"""Template helpers for the training pages."""

from django import template

register = template.Library()

KEY_METRICS = ("loss", "val_loss", "val_accuracy", "val_length_baseline_accuracy",
               "val_same_writer_accuracy", "ensemble_disagreement", "score", "score_std", "kl",
               "entropy", "completions", "completions_per_second")  # fmt: skip


@register.filter
def key_metrics(metrics: dict) -> list[tuple[str, object]]:
    """The few metrics worth a glance in a table, in a fixed order."""
    return [
        (name, metrics[name]) for name in KEY_METRICS if metrics and metrics.get(name) is not None
    ]


@register.filter
def duration(seconds) -> str:
    """Seconds as a person reads them: "45 s", "12 min", "2 h 05 min"."""
    seconds = int(seconds or 0)
    if seconds < 90:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"
