"""A run setting declared once, on the `training.ml` config dataclass that uses it.

The default, the bounds and the help text live in the field's metadata (as TRL's configs do), so
the start form, the run page, `--set` and the presets all read the same declaration, and a preset
or a form can never drift from the code that trains (plain Python: the web process reads it
without importing torch).

    @dataclass
    class DPOConfig:
        beta: float = setting(0.1, "strength of the pull to the reference", minimum=0)
"""

import dataclasses
import typing

SETTING = "rlhf_setting"


@dataclasses.dataclass(frozen=True)
class Setting:
    """What a form and a validator need to know about one config field."""

    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    internal: bool = False  # set by the code that makes the run, not shown on a start form


def setting(default, help: str = "", **bounds):
    """A dataclass field with its default and its `Setting` (bounds, choices, help) attached."""
    meta = {SETTING: Setting(help=help, **bounds)}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def declared(config_class) -> dict[str, tuple[dataclasses.Field, Setting]]:
    """The fields of a config dataclass that are run settings, in declaration order."""
    return {
        f.name: (f, f.metadata[SETTING])
        for f in dataclasses.fields(config_class)
        if SETTING in f.metadata
    }


def value_type(config_class, name: str):
    """The field's plain type (int, float, bool, str), `X | None` unwrapped."""
    hint = typing.get_type_hints(config_class)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint
