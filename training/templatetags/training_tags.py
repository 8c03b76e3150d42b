"""Template helpers for the training pages."""

from django import template

register = template.Library()

KEY_METRICS = ("loss", "val_loss", "val_accuracy", "val_length_baseline_accuracy", "score", "kl",
               "entropy", "completions", "completions_per_second")  # fmt: skip


@register.filter
def key_metrics(metrics: dict) -> list[tuple[str, object]]:
    """The few metrics worth a glance in a table, in a fixed order."""
    return [
        (name, metrics[name]) for name in KEY_METRICS if metrics and metrics.get(name) is not None
    ]
