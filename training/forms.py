"""The start-a-run forms: one per kind, its title and inputs from the kind (`training.jobs.kinds`),
its fields from the kind's declared settings (`training.presets.fields`), prefilled with the
chosen preset. Parsing leaves every check to `run_create` (through `presets.clean_config`)."""

import uuid
from dataclasses import dataclass

from django import forms

from labeling.models import Project
from training import presets
from training.jobs.kinds import run_kind
from training.ml.shipped import SHIPPED_NAME
from training.selectors import versions_for_project

PREFIX = "cfg_"


@dataclass
class ConfigField:
    name: str
    input_name: str
    kind: str  # "int", "float", "bool", "choice"
    value: object
    help: str
    choices: tuple = ()


@dataclass
class StartForm:
    kind: str
    title: str
    noun: str  # "an SFT run"
    takes: tuple[str, ...]  # the model kinds it starts from (empty: no input model)
    needs_reward_model: bool
    preset: str
    fields: list[ConfigField]
    input_choices: list
    reward_choices: list
    request_token: str
    error: str = ""


def start_form(kind: str, *, project, preset: str = "tiny", posted=None, error="") -> StartForm:
    """The form for `kind`: the preset's values, or what was posted when it is shown again."""
    spec_of = run_kind(kind)
    values = presets.defaults(kind, preset)
    fields = []
    for name, spec in presets.fields(kind).items():
        if spec.internal:
            continue
        value = values[name]
        if posted is not None and f"{PREFIX}{name}" in posted:
            value = posted.get(f"{PREFIX}{name}")
        kind_name = (
            "choice"
            if spec.choices
            else {int: "int", float: "float", bool: "bool"}.get(spec.type, "text")
        )
        value = "" if value is None else value
        field = ConfigField(name, f"{PREFIX}{name}", kind_name, value, spec.help, spec.choices)
        fields.append(field)
    inputs = (
        list(versions_for_project(project=project, kinds=spec_of.takes)) if spec_of.takes else []
    )
    rewards = (
        list(versions_for_project(project=project, kinds=["reward"]))
        if spec_of.reward_model == "required"
        else []
    )
    return StartForm(kind, spec_of.title, spec_of.noun, spec_of.takes,
                     spec_of.reward_model == "required", preset, fields, inputs, rewards,
                     request_token=uuid.uuid4().hex, error=error)  # fmt: skip


def parse_start(post) -> dict:
    """The posted form as `run_create` keyword arguments (the models as ids, resolved by the
    view); unchecked check boxes post their hidden "0"."""
    config = {k[len(PREFIX) :]: post.get(k) for k in post if k.startswith(PREFIX)}
    return {
        "config": config,
        "preset": post.get("preset") or "tiny",
        "input_model_id": post.get("input_model") or None,
        "reward_model_id": post.get("reward_model") or None,
        "request_token": (post.get("request_token") or "")[:64] or None,
    }


class ModelImportForm(forms.Form):
    """The admin's model import: a path on the server (models are gigabytes: they are copied
    there, not uploaded through a browser), or the model shipped with the project."""

    path = forms.CharField(
        required=False, max_length=1000,
        help_text="A Hugging Face model directory (config.json, *.safetensors, tokenizer.json) "
                  "or a .gguf file, on the server.",
    )  # fmt: skip
    shipped = forms.BooleanField(
        required=False, label=f"Use the shipped {SHIPPED_NAME}",
        help_text="The Q4_1 GGUF installed with the project (no download).",
    )  # fmt: skip
    name = forms.CharField(required=False, max_length=100, help_text="Default: base-<id>.")
    project = forms.ModelChoiceField(
        queryset=Project.objects.order_by("name"), required=False,
        help_text="Empty: any project may use it.",
    )  # fmt: skip

    def clean(self):
        data = super().clean()
        if bool(data.get("path", "").strip()) == bool(data.get("shipped")):
            raise forms.ValidationError("Give a path or tick the shipped model (one of them).")
        return data
