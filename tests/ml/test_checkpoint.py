import json

import pytest
import torch

from training.ml.model_files import load_model, load_tokenizer, save_model
from training.ml.optim import make_optimizer
from training.ml.resume import load_train_state, save_train_state


def train_steps(model, optimizer, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        idx = torch.randint(0, model.config.vocab_size, (2, 16), generator=g)
        _, loss = model(idx[:, :-1], idx[:, 1:])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def test_save_load_round_trips_exactly(make_model, tiny_tokenizer, tmp_path):
    model = make_model(seed=1, dropout=0.1, scalar_head=True)
    torch.nn.init.normal_(model.score_head.weight)
    tiny_tokenizer.save(tmp_path / "tok.json")
    save_model(tmp_path / "ckpt", model, tokenizer_path=tmp_path / "tok.json", meta={"run": 7})
    loaded, info = load_model(tmp_path / "ckpt")
    assert loaded.config == model.config and info["meta"] == {"run": 7}
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[k], restored[k]) for k in original)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    idx = torch.randint(0, 500, (2, 10))
    assert torch.equal(model.eval()(idx)[0], loaded.eval()(idx)[0])
    assert load_tokenizer(tmp_path / "ckpt").encode("hello") == tiny_tokenizer.encode("hello")


def test_a_config_that_does_not_match_the_weights_is_a_clear_error(make_model, tmp_path):
    save_model(tmp_path / "ckpt", make_model(), tokenizer_path=None)
    config_file = tmp_path / "ckpt" / "config.json"
    info = json.loads(config_file.read_text())
    info["config"]["n_embd"] = 64
    config_file.write_text(json.dumps(info))
    with pytest.raises(ValueError, match="weights do not match config.json"):
        load_model(tmp_path / "ckpt")
    info["config"]["n_embd"], info["config"]["n_layer"] = 32, 3
    config_file.write_text(json.dumps(info))
    with pytest.raises(ValueError, match="missing transformer.h.2"):
        load_model(tmp_path / "ckpt")
    with pytest.raises(ValueError, match="not a model checkpoint"):
        load_model(tmp_path / "nowhere")


def test_a_failed_save_leaves_the_previous_checkpoint_whole(make_model, tmp_path):
    first = make_model(seed=1)
    save_model(tmp_path / "ckpt", first, tokenizer_path=None, meta={"v": 1})
    with pytest.raises(TypeError):
        save_model(tmp_path / "ckpt", make_model(seed=2), tokenizer_path=None, meta={"v": object()})
    with pytest.raises(FileNotFoundError):
        save_model(tmp_path / "ckpt", make_model(seed=2), tokenizer_path=tmp_path / "missing.json")
    loaded, info = load_model(tmp_path / "ckpt")
    assert info["meta"] == {"v": 1}
    assert torch.equal(loaded.lm_head.weight, first.lm_head.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary left behind


def test_resuming_from_the_train_state_continues_exactly(make_model, tmp_path):
    model = make_model(seed=3, dropout=0.1)  # dropout: the RNG state matters too
    optimizer = make_optimizer(model, lr=1e-2)
    train_steps(model, optimizer, 3)
    save_model(tmp_path / "ckpt", model, tokenizer_path=None)
    state_file = tmp_path / "ckpt.state"
    save_train_state(state_file, optimizer=optimizer, step=3, extra={"tokens_seen": 96})
    train_steps(model, optimizer, 2, seed=1)

    resumed, _ = load_model(tmp_path / "ckpt")
    resumed_optimizer = make_optimizer(resumed, lr=1e-2)
    step, extra = load_train_state(state_file, resumed_optimizer)
    assert (step, extra) == (3, {"tokens_seen": 96})
    train_steps(resumed, resumed_optimizer, 2, seed=1)
    for a, b in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_train_state_for_another_model_is_rejected(make_model, tmp_path):
    model = make_model()
    optimizer = make_optimizer(model, lr=1e-3)
    train_steps(model, optimizer, 1)
    save_train_state(tmp_path / "state.safetensors", optimizer=optimizer, step=1, extra=None)
    wider = make_model(n_embd=64)
    with pytest.raises(ValueError, match="has shape"):
        load_train_state(tmp_path / "state.safetensors", make_optimizer(wider, lr=1e-3))
    deeper = make_model(n_layer=3)
    with pytest.raises(ValueError, match="different model or optimizer"):
        load_train_state(tmp_path / "state.safetensors", make_optimizer(deeper, lr=1e-3))
    (tmp_path / "bad.safetensors").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ValueError, match="cannot read training state"):
        load_train_state(tmp_path / "bad.safetensors", optimizer)
