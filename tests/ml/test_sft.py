"""SFT: the loss counts assistant tokens only, the loop learns, splits by prompt, stops when
asked and resumes to the same weights, and refuses empty data and non-finite losses."""


import pytest
import torch
from tiny_text import docs_tokenizer

from training.ml.gpt import GPT, GPTConfig
from training.ml.records import Demonstration, split_by_prompt
from training.ml.sft import (
    IGNORE,
    SFTConfig,
    dialogue_examples,
    lm_batch,
    lm_eval_loss,
    train_sft,
)

tokenizer = docs_tokenizer


def tiny_gpt(seed=0, **overrides):
    torch.manual_seed(seed)
    config = dict(block_size=64, n_layer=2, n_head=2, n_embd=32)
    return GPT(GPTConfig(vocab_size=tokenizer().vocab_size, **{**config, **overrides}))


def demos(n=24):
    colours = ["red", "green", "blue", "amber"]
    return [
        Demonstration(
            [
                {"role": "user", "content": f"colour {i}?"},
                {"role": "assistant", "content": f"it is {colours[i % 4]}"},
            ]
        )
        for i in range(n)
    ]


def test_targets_are_the_assistant_replies_and_their_end_tokens_only():
    tok = tokenizer()
    turns = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello there"},
        {"role": "user", "content": "bye"},
        {"role": "assistant", "content": "see you"},
    ]
    examples, skipped = dialogue_examples(tok, [Demonstration(turns)], block_size=64)
    assert not skipped
    idx, targets = lm_batch(examples, pad_id=tok.pad_id, device="cpu")
    learned = targets[0][targets[0] != IGNORE].tolist()
    assert learned == [*tok.render_reply("hello there"), *tok.render_reply("see you")]
    # target t is input t + 1: the model sees the whole prefix before each learned token
    ids = examples[0].ids
    assert idx[0].tolist() == ids[:-1]
    assert [t for t in targets[0].tolist() if t != IGNORE] == [
        ids[i + 1] for i in range(len(ids) - 1) if examples[0].loss_mask[i + 1]
    ]


def test_sft_learns_the_demonstrations_and_reports_each_step():
    tok, model = tokenizer(), tiny_gpt()
    data = demos()
    examples, _ = dialogue_examples(tok, data, block_size=64)
    before = lm_eval_loss(model, examples, pad_id=tok.pad_id, batch_size=8)
    reports = []
    config = SFTConfig(epochs=12, batch_size=8, lr=1e-2, warmup_steps=3, val_fraction=0.25)
    result = train_sft(model, tok, data, config, on_step=reports.append)
    after = lm_eval_loss(model, examples, pad_id=tok.pad_id, batch_size=8)
    assert after < 0.3 * before
    assert (
        result.step == result.total_steps == len(reports) == 12 * 3
    )  # 18 train examples, batches of 8
    assert [p.step for p in reports] == list(range(1, 37)) and reports[0].stage == "sft"
    assert {"loss", "lr", "grad_norm"} <= reports[0].metrics.keys()
    assert result.metrics["val_examples"] == 6 and result.metrics["val_loss"] < 0.5 * before
    assert not result.stopped


def test_split_keeps_each_prompt_on_one_side():
    data = demos(12) + demos(12)  # every prompt twice
    keys = [d.key() for d in data]
    train, val = split_by_prompt(keys, 0.25, seed=3)
    assert sorted(train + val) == list(range(24)) and len(val) == 6
    assert not {keys[i] for i in train} & {keys[i] for i in val}
    assert split_by_prompt(["same"] * 5, 0.5) == ([0, 1, 2, 3, 4], [])


def test_empty_or_unusable_data_is_a_clear_error():
    tok = tokenizer()
    with pytest.raises(ValueError, match="at least one demonstration"):
        train_sft(tiny_gpt(), tok, [], SFTConfig())
    no_reply = [Demonstration([{"role": "user", "content": "hello?"}])]
    bad_roles = [Demonstration([{"role": "assistant", "content": "hi"}])]
    with pytest.raises(ValueError, match="no_assistant_tokens.*invalid_dialogue|invalid_dialogue"):
        train_sft(tiny_gpt(), tok, no_reply + bad_roles, SFTConfig())
    # unusable records next to good ones are skipped and counted
    result = train_sft(tiny_gpt(), tok, demos(8) + no_reply, SFTConfig(max_steps=1, val_fraction=0))
    assert result.metrics["skipped_records"] == 1


def test_a_nan_loss_stops_training_with_a_clear_error():
    model = tiny_gpt()
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="SFT loss is nan at step 1"):
        train_sft(model, tokenizer(), demos(), SFTConfig(max_steps=3))


def test_stop_then_resume_gives_the_uninterrupted_weights(tmp_path):
    tok, data = tokenizer(), demos()
    config = SFTConfig(epochs=3, batch_size=8, lr=3e-3, warmup_steps=2, checkpoint_every=100)
    straight = train_sft(tiny_gpt(), tok, data, config, checkpoint_dir=tmp_path / "a")

    stopped = train_sft(
        tiny_gpt(),
        tok,
        data,
        config,
        checkpoint_dir=tmp_path / "b",
        on_step=lambda p: p.step == 4,
    )
    assert stopped.stopped and stopped.step == 4 < stopped.total_steps
    seen = []
    resumed = train_sft(
        tiny_gpt(), tok, data, config, checkpoint_dir=tmp_path / "b", on_step=seen.append
    )
    assert [p.step for p in seen] == list(range(5, straight.total_steps + 1))
    for (name, a), b in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    # a finished run resumed does nothing
    again = train_sft(
        tiny_gpt(), tok, data, config, checkpoint_dir=tmp_path / "b", on_step=seen.append
    )
    assert again.step == straight.total_steps and len(seen) == straight.total_steps - 4
