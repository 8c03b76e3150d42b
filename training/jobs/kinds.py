"""The registry of run kinds: one `RunKind` object per kind (`training.jobs.declaration`),
declared as `KIND` in its own module of `training.jobs` (`training/jobs/sft.py`, ...), found here
by looking at those modules.

Everything that differs between kinds is on the object: the services read the inputs, queue,
minimum data and snapshot rule; the start form and the run page its title, settings (the
`setting(...)` fields of its config dataclass) and charts; the worker its `run`. Adding a kind is
one module with a `KIND` (and the migration for `TrainingRun.Kind`); nothing else lists kinds.

This module and the kinds' modules import no service and no torch at import time (a job's ML
imports are inside its `run`): the services import the registry, the worker (`training.worker`)
calls the jobs, and the web process reads a declaration without loading the ML stack.

    run_kind("sft").takes   -> ("base", "sft")
"""

import importlib
import pkgutil
from functools import cache

from training import jobs
from training.errors import Invalid
from training.jobs.declaration import RunKind


@cache
def run_kinds() -> dict[str, RunKind]:
    """Every declared kind by name, in page order (each module of training.jobs with a KIND)."""
    found = []
    for module in pkgutil.iter_modules(jobs.__path__):
        kind = getattr(importlib.import_module(f"training.jobs.{module.name}"), "KIND", None)
        if isinstance(kind, RunKind):
            found.append(kind)
    return {kind.name: kind for kind in sorted(found, key=lambda k: k.order)}


def run_kind(name: str) -> RunKind:
    """The kind called `name`, or `Invalid` naming it."""
    try:
        return run_kinds()[name]
    except (KeyError, TypeError):
        raise Invalid(f"Unknown run kind {name!r}.") from None
