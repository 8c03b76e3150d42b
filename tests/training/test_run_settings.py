"""Run kinds and their settings: each kind one registered object, each setting declared once on its
`training.ml` config; a typo or an out-of-range value is refused with its name on every path
(`clean_config`, the start form, `run_demo_round --set`), and a preset can only name declared
settings."""

import subprocess
import sys
from dataclasses import fields as dataclass_fields

import pytest
from django.core.management.base import CommandError
from training_helpers import make_project

from training import presets
from training.errors import Invalid
from training.jobs.kinds import run_kind, run_kinds
from training.management.commands.run_demo_round import overrides
from training.ml.configs import GPT_SIZES
from training.models import TrainingRun
from training.services.runs import run_create


def test_every_kind_of_run_is_registered_once_with_its_model_choice():
    assert set(run_kinds()) == set(TrainingRun.Kind.values)
    assert [k.name for k in run_kinds().values()] == [
        "pretrain", "sft", "sample", "reward", "dpo", "ppo"]
    assert {k.task_name for k in run_kinds().values()} == {f"training.{k}" for k in run_kinds()}
    assert run_kind("sample").queue == "sampling" and run_kind("ppo").queue == "training"
    with pytest.raises(Invalid, match="Unknown run kind 'dpp'"):
        run_kind("dpp")


def test_a_kinds_settings_are_the_declared_fields_of_its_config():
    for kind in run_kinds().values():
        declared = set(presets.fields(kind.name))
        assert declared <= {f.name for f in dataclass_fields(kind.config)}
    # a library knob without setting() is not a run setting
    assert "grad_clip" not in presets.fields("sft") and "epochs" in presets.fields("sft")


@pytest.mark.parametrize("preset", list(presets.PRESETS))
def test_every_preset_value_names_a_declared_setting_within_its_bounds(preset):
    assert set(presets.PRESETS[preset]) <= set(run_kinds())
    for kind in run_kinds():
        config = presets.defaults(kind, preset)
        assert config == presets.clean_config(kind, config, preset=preset)
        for name, value in presets.PRESETS[preset].get(kind, {}).items():
            assert config[name] == value


def test_a_preset_naming_an_unknown_setting_fails_naming_it(monkeypatch):
    monkeypatch.setitem(presets.PRESETS["gpu"], "sft", {"epocs": 2})
    with pytest.raises(Invalid, match="The gpu preset sets 'epocs', which sft runs do not have"):
        presets.defaults("sft", "gpu")
    monkeypatch.setitem(presets.PRESETS["gpu"], "sft", {"val_fraction": 1.5})
    with pytest.raises(Invalid, match="val_fraction must be at most 0.9"):
        presets.defaults("sft", "gpu")


def test_the_tiny_runs_keep_their_values():
    # what the demo and the tests ran before the settings moved onto the configs
    ppo = presets.clean_config("ppo")
    assert (ppo["lr"], ppo["value_lr"], ppo["kl_coef"]) == (2e-5, 2e-5, 0.05)
    reward = presets.clean_config("reward")
    assert (reward["epochs"], reward["lr"], reward["keep_best"], reward["patience"]) == (
        4, 3e-4, True, 3)  # fmt: skip
    assert presets.clean_config("sft")["epochs"] == 3
    assert presets.clean_config("sample")["top_p"] == 0.95


def test_clean_config_refuses_a_typo_and_an_out_of_range_value_by_name():
    with pytest.raises(Invalid, match="ppo runs have no setting 'kl_coeff'"):
        presets.clean_config("ppo", {"kl_coeff": 0.1})
    with pytest.raises(Invalid, match="kl_coef must be at least 0; got -0.1"):
        presets.clean_config("ppo", {"kl_coef": "-0.1"})
    with pytest.raises(Invalid, match="top_p must be at most 1; got 2.0"):
        presets.clean_config("sample", {"top_p": 2})
    with pytest.raises(Invalid, match="preset must be one of tiny, small"):
        presets.clean_config("pretrain", {"preset": "huge"})


def test_the_gpt_sizes_a_pretraining_run_offers_are_the_models():
    from training.ml.gpt import PRESETS

    assert GPT_SIZES == tuple(PRESETS)


def test_demo_round_set_refuses_a_typo_and_an_out_of_range_value_by_name():
    assert overrides(["ppo.kl_coef=0.02"]) == {"ppo": {"kl_coef": "0.02"}}
    with pytest.raises(CommandError, match="ppo runs have no setting 'kl_coeff'"):
        overrides(["ppo.kl_coeff=0.02"])
    with pytest.raises(CommandError, match="epochs must be at least 1"):
        overrides(["reward.epochs=0"])


@pytest.mark.urls("training_urls")
def test_the_start_form_refuses_a_typo_with_its_name(client, staff, base_version):
    client.force_login(staff)
    project = make_project()
    response = client.post(f"/training/projects/{project.slug}/start/sft/", {
        "request_token": "tok-1", "preset": "tiny", "input_model": base_version.pk,
        "cfg_epochz": "3",
    })  # fmt: skip
    assert response.status_code == 400
    assert "sft runs have no setting &#x27;epochz&#x27;" in response.content.decode()
    assert not TrainingRun.objects.exists()


def test_the_web_process_reads_kinds_and_settings_without_torch():
    code = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'webapp.settings');"
        "import django; django.setup(); import webapp.urls, training.views, training.forms;"
        "from training import presets; from training.jobs.kinds import run_kinds;"
        "[presets.defaults(k, p) for k in run_kinds() for p in presets.PRESETS];"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.urls("training_urls")
def test_the_run_page_shows_each_setting_with_its_help(client, staff, project_with_demos,
                                                       base_version):  # fmt: skip
    client.force_login(staff)
    run = run_create(kind="sft", project=project_with_demos, input_model=base_version,
                     config={"lr": "0.001"}, enqueue_it=False)  # fmt: skip
    page = client.get(f"/training/runs/{run.pk}/").content.decode()
    assert 'lr = 0.001  <span class="muted"># peak learning rate</span>' in page
    assert "epochs = 3\n" in page
