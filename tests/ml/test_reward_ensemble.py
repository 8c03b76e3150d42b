"""Reward-model ensembles: the ensemble scores as the mean of its members, their disagreement is
0 only when they agree, a saved ensemble loads back scoring the same, the bootstrap is seeded
(and can be turned off),
an ensemble run reports the ensemble's and the members' figures and resumes, and PPO against an
ensemble reports the members' disagreement and can subtract it. LoRA members share one frozen
base, in memory and on disk, and score after loading exactly as before saving; an ensemble saved
as member directories (merged LoRA members, as before bases were shared) still loads."""

import copy
import itertools
from dataclasses import replace

import pytest
import torch
from test_reward import hidden_rule_data, tiny_rm, tokenizer, user

from training.ml.ensemble_model import RewardEnsemble
from training.ml.gpt import GPT
from training.ml.lora import frozen_base_copy, has_lora, lora_trained, merge_lora
from training.ml.model_files import load_model, load_tokenizer, read_config, save_model
from training.ml.ppo import PPOConfig, train_ppo
from training.ml.records import RankingRecord, split_by_prompt
from training.ml.reward import (
    RewardConfig,
    RewardModelScorer,
    evaluate_rankings,
    train_reward_model,
)
from training.ml.reward_data import ranking_examples
from training.ml.reward_ensemble import (
    EnsembleScorer,
    bootstrap,
    disagreement,
    member_scores,
    reward_scorer,
    shared_split,
    train_reward_ensemble,
    value_start,
)


def pairs(n=6):
    tok = tokenizer()
    prompts = [tok.render_prompt(user(f"question {i}")) for i in range(n)]
    replies = [tok.render_reply("yes no " * (i % 3 + 1)) for i in range(n)]
    return prompts, replies


def test_the_ensemble_scores_the_mean_of_its_members():
    members = [tiny_rm(seed) for seed in (0, 1, 2)]
    ensemble = RewardEnsemble(members)
    prompts, replies = pairs()
    each = torch.tensor([RewardModelScorer(m, pad_id=0).score_batch(prompts, replies)
                         for m in members])  # fmt: skip
    mean = RewardModelScorer(ensemble, pad_id=0).score_batch(prompts, replies)
    assert mean == pytest.approx(each.mean(0).tolist(), abs=1e-6)
    # PPO's scorer: the same mean, less the penalty times the members' spread
    scorer = EnsembleScorer(ensemble, pad_id=0, penalty=0.5)
    penalized = scorer.score_batch(prompts, replies)
    std = each.std(0, correction=0)
    assert penalized == pytest.approx((each.mean(0) - 0.5 * std).tolist(), abs=1e-6)
    assert scorer.metrics()["score_std"] == pytest.approx(float(std.mean()))


def test_disagreement_is_zero_for_identical_members_and_positive_for_different_ones():
    prompts, replies = pairs()
    sequences = [p + r for p, r in zip(prompts, replies, strict=True)]
    same = RewardEnsemble([tiny_rm(0), tiny_rm(0)])
    assert disagreement(member_scores(same, sequences, pad_id=0)).abs().max() == 0.0
    different = member_scores(RewardEnsemble([tiny_rm(0), tiny_rm(1)]), sequences, pad_id=0)
    spread = disagreement(different)
    assert (spread > 0).all()
    # two members: half the gap between them
    assert spread == pytest.approx(((different[0] - different[1]).abs() / 2).tolist())


def test_a_saved_ensemble_loads_as_one_version_scoring_exactly_the_same(tmp_path):
    tok = tokenizer()
    tok_path = tmp_path / "tok.json"
    tok.save(tok_path)
    ensemble = RewardEnsemble([tiny_rm(0), tiny_rm(1)])
    directory = save_model(tmp_path / "rm", ensemble, tokenizer_path=tok_path,
                           meta={"stage": "reward"})  # fmt: skip
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json", "member-0", "member-1", "tokenizer.json"]  # fmt: skip
    assert isinstance(load_model(directory / "member-1")[0], GPT)  # each a normal model
    info = read_config(directory)  # what a version's page reads: the members' architecture
    assert (info["members"], info["arch"], info["config"]["n_layer"]) == (2, "gpt2", 2)
    loaded, _ = load_model(directory)
    assert isinstance(loaded, RewardEnsemble) and len(loaded.members) == 2
    assert load_tokenizer(directory).vocab_size == tok.vocab_size
    prompts, replies = pairs()
    before = RewardModelScorer(ensemble, pad_id=0).score_batch(prompts, replies)
    assert RewardModelScorer(loaded, pad_id=0).score_batch(prompts, replies) == before


def test_a_damaged_member_count_is_refused(tmp_path):
    directory = save_model(tmp_path / "rm", RewardEnsemble([tiny_rm(0)]), tokenizer_path=None)
    config = directory / "config.json"
    config.write_text(config.read_text().replace('"members": 1', '"members": "../x"'))
    with pytest.raises(ValueError, match="members must be a count"):
        load_model(directory)


def test_a_bootstrap_member_always_draws_prompts_that_give_a_pair():
    """One usable prompt among 40 tied ones: a bootstrap over all 41 leaves about a third of the
    members without it (and the run failing); every member must still have it to learn from."""
    tied = [RankingRecord(user(f"tied {i}"), ["a", "b"], [[[0, 1]]]) for i in range(40)]
    records = hidden_rule_data(1, seed=3) + tied
    config = RewardConfig(epochs=1, batch_size=8, lr=3e-3, val_fraction=0.0, ensemble=8)
    result = train_reward_ensemble(tiny_rm(), tokenizer(), records, config)
    assert len(result.model.members) == 8


def test_the_bootstrap_is_seeded_and_keeps_each_prompts_records_together():
    records = [RankingRecord(user(f"q{i % 10}"), ["a", "b"], [[0, 1]]) for i in range(30)]
    a, b = bootstrap(records, seed=1), bootstrap(records, seed=2)
    assert bootstrap(records, seed=1) == a and a != b
    keys = [r.key() for r in a]
    assert len(a) == 30 and all(keys.count(k) % 3 == 0 for k in keys)  # 3 records a prompt
    assert len(set(keys)) < 10  # drawn with replacement: some prompts are left out


def test_without_the_bootstrap_each_member_is_one_reward_model_on_every_training_prompt():
    """Few usable rankings: `bootstrap=False` gives each member all of them, its seed its own."""
    tok = tokenizer()
    tied = [RankingRecord(user(f"tied {i}"), ["a", "b"], [[[0, 1]]]) for i in range(12)]
    records = hidden_rule_data(40, seed=3) + tied  # tasks that tie give no pair
    config = RewardConfig(epochs=1, batch_size=8, lr=3e-3, val_fraction=0.25, ensemble=2,
                          bootstrap=False)  # fmt: skip
    result = train_reward_ensemble(tiny_rm(), tok, records, config)
    members = result.model.members
    # member 0 is the reward model one run trains: the same split, among prompts with a pair
    alone = train_reward_model(tiny_rm(), tok, records, replace(config, ensemble=1))
    assert result.metrics["val_prompts"] == alone.metrics["val_prompts"] == 10
    for a, b in itertools.zip_longest(members[0].parameters(), alone.model.parameters()):
        assert torch.equal(a, b)
    # member 1 is one trained with seed 1 on those training prompts, checked on that split
    train, val = shared_split(tok, records, config, block_size=64)
    assert {r.key() for r in val} & {r.key() for r in train} == set()
    assert not {r.key() for r in tied} & {r.key() for r in train + val}  # nothing to learn
    second = train_reward_model(tiny_rm(), tok, train, replace(config, seed=1, ensemble=1),
                                validation=val).model  # fmt: skip
    for a, b in itertools.zip_longest(members[1].parameters(), second.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(members[0].score_head.weight, members[1].score_head.weight)


@pytest.fixture(scope="module")
def ensemble_run():
    records = hidden_rule_data(60, seed=3)
    held_out = [RankingRecord(user(f"held-out {i}"), r.completions, r.rankings)
                for i, r in enumerate(hidden_rule_data(12, seed=4))]  # fmt: skip
    config = RewardConfig(epochs=2, batch_size=8, lr=3e-3, val_fraction=0.25, ensemble=3)
    reports = []
    result = train_reward_ensemble(tiny_rm(), tokenizer(), records, config, held_out=held_out,
                                   on_step=reports.append)  # fmt: skip
    return result, reports, records, held_out, config


def test_an_ensemble_run_reports_the_ensembles_figures_and_the_members_spread(ensemble_run):
    result, reports, records, held_out, config = ensemble_run
    m, tok = result.metrics, tokenizer()
    assert isinstance(result.model, RewardEnsemble) and len(result.model.members) == 3
    # the members learned differently: different weights, a spread on held-out completions
    heads = [member.score_head.weight for member in result.model.members]
    assert not any(torch.equal(a, b) for a, b in itertools.combinations(heads, 2))
    assert m["ensemble_members"] == 3 and m["ensemble_disagreement"] > 0
    assert m["heldout_disagreement"] > 0
    assert m["member_val_accuracy_min"] <= m["member_val_accuracy_max"]
    # val_* are the saved ensemble's figures, on the validation prompts every member shared
    assert m["val_prompts"] == 15
    assert {p.metrics["val_prompts"] for p in reports} == {15}
    _, val = split_by_prompt([r.key() for r in records], config.val_fraction, seed=config.seed)
    examples, _ = ranking_examples(tok, [records[i] for i in val], block_size=64)
    again = evaluate_rankings(result.model, examples, pad_id=tok.pad_id, batch_size=8)
    assert m["val_accuracy"] == pytest.approx(again["accuracy"])
    for i, member in enumerate(result.model.members):  # each member's own figure, same pairs
        last = [p.metrics for p in reports if p.metrics["member"] == i][-1]
        alone = evaluate_rankings(member, examples, pad_id=tok.pad_id, batch_size=8)
        assert last["val_accuracy"] == pytest.approx(alone["accuracy"])
    assert m["heldout_prompts"] == 12 and 0 <= m["heldout_accuracy"] <= 1
    # one progress bar over the three members, each member's steps after the previous ones'
    steps = [p.step for p in reports]
    assert steps == list(range(1, len(steps) + 1)) and reports[-1].total == steps[-1]
    assert [p.metrics["member"] for p in reports[:: len(steps) // 3]] == [0.0, 1.0, 2.0]


def test_an_ensemble_run_stopped_in_its_second_member_resumes_to_the_same_ensemble(
    ensemble_run, tmp_path
):
    result, reports, records, held_out, config = ensemble_run
    per_member = len(reports) // 3
    stopped = train_reward_ensemble(tiny_rm(), tokenizer(), records, config, held_out=held_out,
                                    on_step=lambda p: p.step == per_member + 2,
                                    checkpoint_dir=tmp_path)  # fmt: skip
    assert stopped.stopped
    resumed = train_reward_ensemble(tiny_rm(), tokenizer(), records, config, held_out=held_out,
                                    checkpoint_dir=tmp_path)  # fmt: skip
    for a, b in itertools.zip_longest(result.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert resumed.metrics == result.metrics


def test_ppo_against_an_ensemble_reports_its_disagreement_and_can_subtract_it(ensemble_run):
    ensemble = ensemble_run[0].model
    tok = tokenizer()
    torch.manual_seed(0)
    policy = GPT(replace(ensemble.config, scalar_head=False))
    prompts = [user(f"question {i}") for i in range(8)]
    # every reply scored (no cut-off penalty, no clip), so the penalty is exactly visible
    config = dict(iterations=1, prompts_per_iteration=8, max_new_tokens=6, ppo_epochs=1,
                  minibatch_size=8, unfinished_penalty=None, score_clip=None)  # fmt: skip
    runs = {
        penalty: train_ppo(copy.deepcopy(policy), tok, prompts,
                           PPOConfig(ensemble_penalty=penalty, **config), reward=ensemble)
        for penalty in (0.0, 2.0)
    }  # fmt: skip
    plain, penalized = runs[0.0].history[0], runs[2.0].history[0]
    assert plain["score_std"] > 0 and penalized["score_std"] == pytest.approx(plain["score_std"])
    assert penalized["score"] == pytest.approx(plain["score"] - 2.0 * plain["score_std"], abs=1e-5)


def test_a_penalty_against_a_single_reward_model_is_refused_naming_it():
    with pytest.raises(ValueError, match="ensemble_penalty 0.5 needs a reward-model ensemble"):
        reward_scorer(tiny_rm(), pad_id=0, penalty=0.5)


@pytest.fixture(scope="module")
def lora_ensemble():
    """Three LoRA members trained from one tiny reward model, that model (their base), the
    rankings and the config."""
    start, records = tiny_rm(), hidden_rule_data(40, seed=3)
    config = RewardConfig(epochs=1, batch_size=8, lr=3e-3, val_fraction=0.25, ensemble=3,
                          lora_rank=4)  # fmt: skip
    result = train_reward_ensemble(start, tokenizer(), records, config)
    return result.model, start, records, config


def numel(module) -> int:
    return sum(p.numel() for p in module.parameters())  # each shared parameter once


def test_lora_members_share_one_frozen_base_and_still_differ(lora_ensemble):
    ensemble, start, _, _ = lora_ensemble
    assert ensemble.shared_base and all(has_lora(m) for m in ensemble.members)
    own = sum(p.numel() for n, p in ensemble.members[0].named_parameters() if lora_trained(n))
    assert numel(ensemble) == numel(start) - numel(start.score_head) + 3 * own  # the base once
    assert numel(ensemble) < 1.5 * numel(start)  # merged members would hold 3 whole models
    bases = [{p.data_ptr() for n, p in m.named_parameters() if not lora_trained(n)}
             for m in (start, *ensemble.members)]  # fmt: skip
    assert all(base == bases[0] for base in bases)  # the very tensors of the input model
    prompts, replies = pairs()
    sequences = [p + r for p, r in zip(prompts, replies, strict=True)]
    scores = member_scores(ensemble, sequences, pad_id=0)
    assert not any(torch.equal(a, b) for a, b in itertools.combinations(scores, 2))


def test_a_saved_lora_ensemble_stores_the_base_once_and_loads_scoring_exactly_the_same(
    lora_ensemble, tmp_path
):
    ensemble, start, _, _ = lora_ensemble
    directory = save_model(tmp_path / "rm", ensemble, tokenizer_path=None)
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json", "member-0.safetensors", "member-1.safetensors", "member-2.safetensors",
        "model.safetensors"]  # fmt: skip
    info = read_config(directory)
    assert (info["members"], info["lora"]["r"], info["config"]["n_layer"]) == (3, 4, 2)
    merged = RewardEnsemble([merge_lora(frozen_base_copy(m)) for m in ensemble.members])
    old = save_model(tmp_path / "merged", merged, tokenizer_path=None)  # the layout before
    assert (old / "member-2" / "model.safetensors").is_file()

    def size(d):
        return sum(f.stat().st_size for f in d.rglob("*.safetensors"))

    assert size(directory) < 0.5 * size(old)
    loaded, _ = load_model(directory)
    assert loaded.shared_base and numel(loaded) == numel(ensemble)
    prompts, replies = pairs()
    sequences = [p + r for p, r in zip(prompts, replies, strict=True)]
    before = member_scores(ensemble, sequences, pad_id=0)
    assert torch.equal(member_scores(loaded, sequences, pad_id=0), before)
    # the old layout (merged members, each a model directory) loads as it did
    again, _ = load_model(old)
    assert not again.shared_base and numel(again) == 3 * numel(merged.members[0])
    assert torch.allclose(member_scores(again, sequences, pad_id=0), before, atol=1e-5)


def test_a_lora_ensembles_value_model_is_member_0_over_the_shared_base(lora_ensemble):
    """With LoRA, PPO's value model adds no trunk: member 0's adapters and head, copied and
    trainable, over the base the members share; without LoRA a whole merged copy. Training
    either leaves the ensemble as it was."""
    ensemble = lora_ensemble[0]
    prompts, replies = pairs()
    sequences = [p + r for p, r in zip(prompts, replies, strict=True)]
    before = member_scores(ensemble, sequences, pad_id=0)
    shared, whole = value_start(ensemble, lora=True), value_start(ensemble, lora=False)
    assert has_lora(shared) and not has_lora(whole)
    base = {id(p) for p in ensemble.members[0].parameters()}
    trained = [n for n, p in shared.named_parameters() if id(p) not in base]
    assert trained and all(lora_trained(n) for n in trained)  # only adapters and head are new
    assert [n for n, p in shared.named_parameters() if p.requires_grad] == trained
    assert not base & {id(p) for p in whole.parameters()}
    for value in (shared, whole):
        alone = member_scores(RewardEnsemble([value]), sequences, pad_id=0)[0]
        assert torch.allclose(alone, before[0], atol=1e-5)
        with torch.no_grad():  # its own weights: training it leaves the members' base alone
            for p in value.parameters():
                if p.requires_grad:
                    p.add_(1.0)
    assert ensemble.shared_base and torch.equal(member_scores(ensemble, sequences, pad_id=0),
                                                before)  # fmt: skip
    # PPO with LoRA against the ensemble: its value model trains its copy of member 0's
    torch.manual_seed(0)
    policy = GPT(replace(ensemble.config, scalar_head=False))
    run = train_ppo(policy, tokenizer(), [user(f"question {i}") for i in range(4)],
                    PPOConfig(iterations=1, prompts_per_iteration=4, max_new_tokens=4,
                              ppo_epochs=1, minibatch_size=4, lora_rank=4,
                              unfinished_penalty=None),
                    reward=ensemble)  # fmt: skip
    assert run.history[0]["score_std"] > 0
    assert not torch.equal(run.value_model.score_head.weight,
                           ensemble.members[0].score_head.weight)  # fmt: skip
    assert torch.equal(member_scores(ensemble, sequences, pad_id=0), before)


def test_a_lora_ensemble_stopped_in_its_second_member_resumes_to_the_same_ensemble(
    lora_ensemble, tmp_path
):
    ensemble, _, records, config = lora_ensemble
    stopped = train_reward_ensemble(tiny_rm(), tokenizer(), records, config,
                                    on_step=lambda p: p.step == 5, checkpoint_dir=tmp_path)
    assert stopped.stopped
    resumed = train_reward_ensemble(tiny_rm(), tokenizer(), records, config,
                                    checkpoint_dir=tmp_path).model  # fmt: skip
    assert resumed.shared_base
    for a, b in itertools.zip_longest(ensemble.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
