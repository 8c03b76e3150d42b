"""Progress reporting for long loops, through one callback type.

Every training loop calls `on_step(Progress(...))` after each optimizer step. The command lines
pass `tqdm_reporter(...)` to draw a progress bar; the Django side passes a callback that stores
metrics on the run row and returns True when the run was cancelled, which asks the loop to stop
early (after it saved its checkpoint, so the run can be resumed).
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Progress:
    """One report: which stage, the step just finished (1-based) out of `total`, its metrics."""

    stage: str
    step: int
    total: int
    metrics: dict[str, float] = field(default_factory=dict)


OnStep = Callable[[Progress], bool | None]


def report(on_step: OnStep | None, progress: Progress) -> bool:
    """Call `on_step` if there is one; True means the caller asked the loop to stop."""
    return bool(on_step(progress)) if on_step is not None else False


def json_safe(values: dict) -> dict:
    """Metrics as JSON can store them: NaN and infinities become None, tensors floats."""
    out = {}
    for name, value in (values or {}).items():
        if isinstance(value, bool) or value is None or isinstance(value, str):
            out[name] = value
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        out[name] = number if math.isfinite(number) else None
    return out


def tqdm_reporter(desc: str, *, leave: bool = True) -> OnStep:
    """An `OnStep` that draws a tqdm bar with the latest metrics; it never asks to stop.

    The bar is created on the first report, when the total is known, and closed at the last
    step. A resumed run starts the bar at the step it resumed from.
    """
    from tqdm import tqdm

    bar = None

    def on_step(progress: Progress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=progress.total, initial=progress.step - 1, desc=desc, leave=leave)
        bar.update(progress.step - bar.n)
        bar.set_postfix({k: f"{v:.4g}" for k, v in progress.metrics.items()}, refresh=False)
        if progress.step >= progress.total:
            bar.close()

    return on_step
