"""A reward run with `ensemble: 2` through the real job: one version holding two member models,
the ensemble's figures and the members' disagreement on the run (validation and evaluation
prompts), and a PPO run against that version reporting the disagreement on its own samples
and subtracting it. With LoRA the version stores one base and each member's adapters, and a
LoRA PPO run against it works. An ensemble size out of bounds is refused by name."""

from pathlib import Path

import pytest
import torch
from test_held_out_runs import execute, ranked_with_held_out

from training import presets
from training.charts import run_charts
from training.errors import Invalid
from training.ml.model_files import load_model, load_tokenizer, save_model
from training.models import TrainingRun
from training.selectors import metric_points, version_files
from training.services.model_versions import model_version_register
from training.services.runs import run_create


def ending_model(tiny_base_dir, tmp_path) -> Path:
    """The tiny base model made to end every reply at once (its final norm a constant along which
    the <|end|> row of the tied head points), so PPO's replies are scored, none cut off; the
    untrained model would run past a short `max_new_tokens` almost always."""
    model, info = load_model(tiny_base_dir)
    end_id = load_tokenizer(tiny_base_dir).end_id
    with torch.no_grad():
        norm = model.transformer.ln_f
        norm.weight.zero_()
        norm.bias.normal_()
        model.lm_head.weight[end_id] = 20 * norm.bias / norm.bias.norm()
    return save_model(tmp_path / "ending", model, tokenizer_path=info["tokenizer_path"])


def ensemble_run(project, tiny_base_dir, **config) -> TrainingRun:
    """A finished 2-member reward-ensemble run on the project's rankings, 3 prompts held out."""
    sft, _, _ = ranked_with_held_out(project, tiny_base_dir)
    return execute(run_create(kind="reward", project=project, input_model=sft, enqueue_it=False,
                              config={"max_steps": 2, "batch_size": 4, "val_fraction": 0.25,
                                      "ensemble": 2, **config}))  # fmt: skip


@pytest.mark.django_db(transaction=True)  # the runner's heartbeat: own connection
def test_an_ensemble_reward_run_reports_disagreement_and_ppo_runs_against_it(
    project_with_demos, tiny_base_dir, artifacts, settings, tmp_path
):
    settings.TRAINING_MIN_RANKED_TASKS = 4
    project = project_with_demos
    reward = ensemble_run(project, tiny_base_dir)
    m = reward.metrics
    assert m["ensemble_members"] == 2
    assert m["ensemble_disagreement"] > 0 and m["heldout_disagreement"] > 0
    assert m["member_val_accuracy_min"] <= m["member_val_accuracy_max"]
    assert m["heldout_prompts"] == 3 and 0 <= m["heldout_accuracy"] <= 1
    assert reward.step == reward.total == 4  # both members' steps on one progress bar
    rm = reward.output_model
    files = sorted(p.name for p in Path(rm.checkpoint_dir).iterdir())
    assert files == ["config.json", "member-0", "member-1", "tokenizer.json"]
    assert version_files(version=rm)["layers"] == 2  # the version's page reads the members'
    assert rm.metrics["ensemble_disagreement"] == m["ensemble_disagreement"]

    policy = model_version_register(checkpoint_dir=str(ending_model(tiny_base_dir, tmp_path)),
                                    kind="sft", name="ends-at-once", project=project)  # fmt: skip
    ppo = execute(run_create(
        kind="ppo", project=project, input_model=policy, reward_model=rm,
        config={"iterations": 2, "prompts_per_iteration": 4, "max_new_tokens": 8,
                "ppo_epochs": 1, "minibatch_size": 4, "ensemble_penalty": 0.5},
        enqueue_it=False,
    ))  # fmt: skip
    assert ppo.metrics["end_rate"] == 1.0
    assert ppo.metrics["score_std"] > 0  # the members' disagreement on PPO's own replies
    charts = [str(c) for c in run_charts("ppo", metric_points(run=ppo))]  # the run page's
    assert any('aria-label="reward-model disagreement"' in c for c in charts)
    assert "heldout_score" in ppo.metrics and ppo.metrics["heldout_score_std"] > 0  # held out too


@pytest.mark.django_db(transaction=True)  # the runner's heartbeat: own connection
def test_a_lora_ensemble_reward_run_stores_one_base_and_ppo_with_lora_runs_against_it(
    project_with_demos, tiny_base_dir, artifacts, settings, tmp_path
):
    settings.TRAINING_MIN_RANKED_TASKS = 4
    project = project_with_demos
    reward = ensemble_run(project, tiny_base_dir, lora_rank=4)
    assert reward.metrics["ensemble_disagreement"] > 0
    rm = reward.output_model
    files = sorted(p.name for p in Path(rm.checkpoint_dir).iterdir())
    assert files == ["config.json", "member-0.safetensors", "member-1.safetensors",
                     "model.safetensors", "tokenizer.json"]  # fmt: skip
    assert version_files(version=rm)["layers"] == 2
    assert load_model(rm.checkpoint_dir)[0].shared_base
    policy = model_version_register(checkpoint_dir=str(ending_model(tiny_base_dir, tmp_path)),
                                    kind="sft", name="ends-at-once", project=project)  # fmt: skip
    ppo = execute(run_create(
        kind="ppo", project=project, input_model=policy, reward_model=rm,
        config={"iterations": 1, "prompts_per_iteration": 4, "max_new_tokens": 8,
                "ppo_epochs": 1, "minibatch_size": 4, "ensemble_penalty": 0.5, "lora_rank": 4},
        enqueue_it=False,
    ))  # fmt: skip
    assert ppo.metrics["end_rate"] == 1.0 and ppo.metrics["score_std"] > 0


@pytest.mark.parametrize(("value", "message"), [
    (0, "ensemble must be at least 1; got 0"), (9, "ensemble must be at most 8; got 9")])
def test_an_ensemble_size_out_of_bounds_is_refused_by_name(value, message):
    with pytest.raises(Invalid, match=message):
        presets.clean_config("reward", {"ensemble": value})


@pytest.mark.django_db
def test_an_ensemble_penalty_against_a_single_reward_model_is_refused_before_the_run(
    project_with_demos, tiny_base_dir
):
    project = project_with_demos
    sft = model_version_register(checkpoint_dir=str(tiny_base_dir), kind="sft", name="sft",
                                 project=project)  # fmt: skip
    single = model_version_register(checkpoint_dir=str(tiny_base_dir), kind="reward", name="rm",
                                    project=project)  # fmt: skip
    with pytest.raises(Invalid, match="ensemble_penalty .* rm is one reward model"):
        run_create(kind="ppo", project=project, input_model=sft, reward_model=single,
                   config={"ensemble_penalty": 0.5}, enqueue_it=False)  # fmt: skip
    assert not project.training_runs.exists()  # nothing written
