"""LoRA: only adapters (and a scalar head) learn, merging is exact and leaves a plain model that
saves and loads, disabled adapters give the base, and SFT, the reward model and PPO train with
adapters (PPO's reference being the policy's own base), resuming to the uninterrupted weights."""

import copy

import pytest
import torch
from safetensors.torch import load_file

from training.ml.ensemble_model import RewardEnsemble
from training.ml.gpt import GPT, GPTConfig
from training.ml.lora import (
    LoraSettings,
    adapters_disabled,
    add_lora,
    frozen_base_copy,
    has_lora,
    lora_settings,
    lora_trained,
    merge_lora,
    target_names,
)
from training.ml.model_files import load_model, read_config, save_model
from training.ml.ppo import PPOConfig, PPOTrainer, train_ppo
from training.ml.records import Demonstration, RankingRecord
from training.ml.reward import RewardConfig, train_reward_model
from training.ml.sft import SFTConfig, dialogue_examples, lm_eval_loss, train_sft

ADAPTED = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def demos(question="colour", answers=("red", "green", "blue", "amber"), n=20):
    return [
        Demonstration(
            [
                {"role": "user", "content": f"{question} {i}?"},
                {"role": "assistant", "content": f"it is {answers[i % len(answers)]}"},
            ]
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def pretrained(tiny_tokenizer):
    """A tiny GPT fine-tuned in full on another task. A random GPT is no base for LoRA: its
    frozen 0.02-scale tied embeddings hold its logits near uniform whatever the adapters do."""
    torch.manual_seed(0)
    config = GPTConfig(tiny_tokenizer.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=32)
    model = GPT(config)
    shapes = demos("shape", ("round", "square", "flat"), n=40)
    sft = SFTConfig(max_steps=30, batch_size=8, lr=1e-2, warmup_steps=3)
    return train_sft(model, tiny_tokenizer, shapes, sft).model


def user(text):
    return [{"role": "user", "content": text}]


def random_adapters(model, seed=1):
    """B starts at zero (the adapted model is the base); random B makes the adapters count."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(0, 0.5)
    return model


def untouched_by_lora(name):
    """Training with LoRA changes the adapted layers' weights (not their biases) and the head."""
    changed = name.endswith(tuple(f"{part}.weight" for part in ADAPTED))
    return not (changed or name.startswith("score_head."))


def test_default_targets_are_the_block_linears_never_the_heads(make_model):
    model = GPT.with_scalar_head(make_model())
    names = target_names(model)
    assert names == [f"transformer.h.{i}.{part}" for i in range(2) for part in ADAPTED]
    assert target_names(model, ["c_attn"]) == ["transformer.h.0.attn.c_attn",
                                               "transformer.h.1.attn.c_attn"]  # fmt: skip
    with pytest.raises(ValueError, match="'q_proj' names no nn.Linear"):
        target_names(model, ["q_proj"])
    with pytest.raises(ValueError, match="output or scalar head"):
        target_names(model, ["lm_head"])
    with pytest.raises(ValueError, match="rank"):
        LoraSettings(r=0)


def test_only_adapters_and_the_scalar_head_get_gradients(make_model, tiny_tokenizer):
    idx = torch.randint(0, tiny_tokenizer.vocab_size, (2, 12))
    policy = random_adapters(add_lora(make_model(), LoraSettings(r=4)))
    _, loss = policy(idx, idx)
    loss.backward()
    with_grad = {n for n, p in policy.named_parameters() if p.grad is not None}
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert with_grad == trainable and len(trainable) == 2 * 2 * len(ADAPTED)
    assert all(".lora_A." in n or ".lora_B." in n for n in trainable)

    reward = add_lora(GPT.with_scalar_head(make_model()), LoraSettings(r=4))
    reward.scores(idx).sum().backward()
    trainable = {n for n, p in reward.named_parameters() if p.requires_grad}
    assert {"score_head.weight", "score_head.bias"} <= trainable
    assert all(".lora_" in n or n.startswith("score_head.") for n in trainable)
    assert all((p.grad is not None) == p.requires_grad for p in reward.parameters())


def test_merged_equals_unmerged_and_is_a_plain_model_that_saves(make_model, tmp_path):
    plain_keys = set(make_model().state_dict())
    model = random_adapters(add_lora(make_model(), LoraSettings(r=4, dropout=0.1))).eval()
    idx = torch.randint(0, model.config.vocab_size, (2, 16))
    with torch.no_grad():
        adapted, _ = model(idx)  # eval mode: the adapters' dropout is off
    assert has_lora(model) and lora_settings(model).r == 4
    merged = merge_lora(model)
    assert merged is model and not has_lora(model) and not hasattr(model, "peft_config")
    assert set(model.state_dict()) == plain_keys
    assert not any("lora" in name for name, _ in model.named_modules())
    assert model.lm_head.weight is model.transformer.wte.weight  # the tie survives
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        out, _ = model(idx)
    assert (out - adapted).abs().max() < 1e-5
    save_model(tmp_path / "m", model, tokenizer_path=None)
    loaded, info = load_model(tmp_path / "m")
    assert "lora" not in info and not has_lora(loaded)
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], out)


def test_disabled_adapters_give_the_base_model(make_model):
    base = make_model().eval()
    idx = torch.randint(0, base.config.vocab_size, (2, 16))
    with torch.no_grad():
        expected, _ = base(idx)
        model = random_adapters(add_lora(make_model(), LoraSettings(r=4)))
        with adapters_disabled(model):
            off, _ = model(idx)
        on, _ = model(idx)
    assert torch.equal(off, expected)
    assert (on - expected).abs().max() > 1e-3  # the adapters are back on after the block
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        n for n in dict(model.named_parameters()) if ".lora_" in n
    ]  # peft's switch toggles requires_grad: the flags are restored


def test_a_lora_checkpoint_loads_with_its_adapters(make_model, tmp_path):
    model = random_adapters(add_lora(make_model(), LoraSettings(r=2, target_modules=["c_fc"])))
    save_model(tmp_path / "m", model, tokenizer_path=None)
    loaded, info = load_model(tmp_path / "m")
    assert info["lora"]["r"] == 2 and lora_settings(loaded) == lora_settings(model)
    for (n, a), (m, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert n == m and torch.equal(a, b)


def test_a_frozen_base_copy_shares_the_base_and_copies_the_rest(make_model):
    reward = GPT.with_scalar_head(make_model())
    value = frozen_base_copy(reward)
    assert value.transformer.wte.weight is reward.transformer.wte.weight
    assert value.score_head.weight is not reward.score_head.weight
    add_lora(value, LoraSettings(r=2))
    assert not has_lora(reward)
    random_adapters(value)
    before = {k: v.clone() for k, v in reward.state_dict().items()}
    merge_lora(value)  # merging never writes into the shared tensors
    assert (
        value.transformer.h[0].attn.c_attn.weight is not reward.transformer.h[0].attn.c_attn.weight
    )
    for k, v in reward.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_sft_with_lora_lowers_the_loss_and_touches_only_the_adapted_layers(
    pretrained, tiny_tokenizer
):
    tok, data = tiny_tokenizer, demos()
    model = copy.deepcopy(pretrained)
    examples, _ = dialogue_examples(tok, data, block_size=64)
    before = lm_eval_loss(model, examples, pad_id=tok.pad_id, batch_size=8)
    config = SFTConfig(max_steps=6, batch_size=8, lr=1e-2, warmup_steps=2, lora_rank=8)
    result = train_sft(model, tok, data, config)
    after = lm_eval_loss(model, examples, pad_id=tok.pad_id, batch_size=8)
    assert after < 0.9 * before
    assert result.model is model and not has_lora(model)
    start = pretrained.state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, start[name]) == untouched_by_lora(name), name


def test_reward_model_with_lora_trains_and_ends_plain(make_model, tiny_tokenizer):
    records = [
        RankingRecord(user(f"question {i}"), ["yes yes yes", "no", "yes no"], [[0, 2, 1]])
        for i in range(24)
    ]
    model = GPT.with_scalar_head(make_model())
    start = {k: v.clone() for k, v in model.state_dict().items()}
    config = RewardConfig(epochs=3, batch_size=8, lr=1e-2, val_fraction=0.25, lora_rank=4)
    result = train_reward_model(model, tiny_tokenizer, records, config)
    assert result.metrics["val_accuracy"] > 0.9
    assert not has_lora(result.model)
    assert set(result.model.state_dict()) == set(start)
    for name, value in result.model.state_dict().items():
        assert torch.equal(value, start[name]) == untouched_by_lora(name), name


PPO = dict(
    iterations=1, prompts_per_iteration=8, samples_per_prompt=2, max_new_tokens=8, lr=1e-3,
    value_lr=1e-3, minibatch_size=8, ppo_epochs=2, lora_rank=4,
)  # fmt: skip


def test_ppo_with_lora_uses_the_policys_base_as_reference(make_model, tiny_tokenizer):
    policy, reward = make_model(), GPT.with_scalar_head(make_model(seed=1))
    with torch.no_grad():
        reward.score_head.weight.normal_(0, 0.5)
    kept = {k: v.clone() for k, v in reward.state_dict().items()}
    start = {k: v.clone() for k, v in policy.state_dict().items()}
    trainer = PPOTrainer(policy, PPOConfig(**PPO), reward=reward, pad_id=0, end_id=1)
    assert trainer.reference is None and has_lora(policy)  # no copy: the adapters switched off
    value = trainer.value_model
    assert (
        value.transformer.h[0].mlp.c_fc.base_layer.weight is reward.transformer.h[0].mlp.c_fc.weight
    )
    merge_lora(policy)

    prompts = [user(f"colour {i}?") for i in range(8)]
    result = train_ppo(policy, tiny_tokenizer, prompts, PPOConfig(**PPO), reward=reward)
    first = result.history[0]
    assert first["kl"] == 0.0 and first["first_ratio_error"] <= 1e-6
    assert not has_lora(result.policy) and not has_lora(result.value_model)
    moved = [n for n, v in result.policy.state_dict().items() if not torch.equal(v, start[n])]
    assert moved and all(not untouched_by_lora(n) for n in moved)
    for name, value in reward.state_dict().items():  # the shared, frozen base is left alone
        assert torch.equal(value, kept[name]), name
    assert not torch.equal(result.value_model.score_head.weight, reward.score_head.weight)


def test_lora_sft_stopped_and_resumed_reaches_the_uninterrupted_weights(
    pretrained, tiny_tokenizer, tmp_path
):
    tok, data = tiny_tokenizer, demos()
    config = SFTConfig(max_steps=6, batch_size=4, lr=1e-2, warmup_steps=2, lora_rank=4,
                       lora_dropout=0.1, checkpoint_every=100)  # fmt: skip
    torch.manual_seed(0)  # the adapters' dropout draws from the global RNG, as model dropout
    straight = train_sft(copy.deepcopy(pretrained), tok, data, config,
                         checkpoint_dir=tmp_path / "a")  # fmt: skip
    torch.manual_seed(0)
    stopped = train_sft(
        copy.deepcopy(pretrained), tok, data, config, checkpoint_dir=tmp_path / "b",
        on_step=lambda p: p.step == 3,
    )  # fmt: skip
    assert stopped.stopped and stopped.step == 3 and not has_lora(stopped.model)
    # the checkpoint keeps the adapters apart, and only them: the base is the run's input
    saved = tmp_path / "b" / "step-000003" / "model"
    info = read_config(saved)
    assert info["lora"]["r"] == 4 and info["trained_only"]
    stored = load_file(saved / "model.safetensors")
    adapters = {n for n, _ in add_lora(copy.deepcopy(pretrained), LoraSettings(r=4))
                .named_parameters() if lora_trained(n)}  # fmt: skip
    assert adapters and stored.keys() == adapters
    with pytest.raises(ValueError, match="LoRA adapters alone"):
        load_model(saved)  # not a model one could register or export
    resumed = train_sft(copy.deepcopy(pretrained), tok, data, config, checkpoint_dir=tmp_path / "b")
    assert resumed.step == straight.step == 6
    for (n, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), n


@pytest.mark.parametrize("ensemble", [False, True], ids=["reward-model", "lora-ensemble"])
def test_lora_ppo_stopped_and_resumed_reaches_the_uninterrupted_models(
    make_model, tiny_tokenizer, tmp_path, ensemble
):
    """The value model and the EMA share frozen tensors with the reward model and the policy
    (against a LoRA ensemble the value model trains member 0's adapters): their checkpoints,
    which hold adapters and heads alone, still restore them, and merging at the stop leaves
    the others intact."""
    policy, reward = make_model(), GPT.with_scalar_head(make_model(seed=1))
    with torch.no_grad():
        reward.score_head.weight.normal_(0, 0.5)
    if ensemble:
        reward = RewardEnsemble([
            random_adapters(add_lora(frozen_base_copy(reward), LoraSettings(r=2)), seed=i)
            for i in range(2)
        ])  # fmt: skip
    prompts = [user(f"colour {i}?") for i in range(8)]
    config = PPOConfig(**{**PPO, "iterations": 3, "ema_decay": 0.9})
    runs = []
    for checkpoint_dir, stop in ((None, None), (tmp_path, 1), (tmp_path, None)):
        torch.manual_seed(0)
        runs.append(train_ppo(
            copy.deepcopy(policy), tiny_tokenizer, prompts, config, reward=reward,
            checkpoint_dir=checkpoint_dir, on_step=lambda p, stop=stop: p.step == stop,
        ))  # fmt: skip
    straight, stopped, resumed = runs
    assert stopped.iteration == 1 and resumed.iteration == 3
    for a, b in (
        (straight.policy, resumed.policy),
        (straight.value_model, resumed.value_model),
        (straight.ema, resumed.ema),
    ):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(x, y), name


def test_resuming_with_other_lora_settings_is_a_clear_error(pretrained, tiny_tokenizer, tmp_path):
    tok, data = tiny_tokenizer, demos()
    full = SFTConfig(max_steps=4, batch_size=4, checkpoint_every=100)
    train_sft(copy.deepcopy(pretrained), tok, data, full, checkpoint_dir=tmp_path,
              on_step=lambda p: p.step == 2)  # fmt: skip
    with pytest.raises(ValueError, match="LoRA on or off"):
        train_sft(copy.deepcopy(pretrained), tok, data,
                  SFTConfig(max_steps=4, batch_size=4, lora_rank=4), checkpoint_dir=tmp_path)
