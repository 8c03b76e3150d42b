import json

import pytest
import torch
from safetensors.torch import save_file

from training.ml.gpt2_weights import load_gpt2, save_gpt2, to_gpt2_state_dict

V, T, C, L, H = 300, 32, 48, 2, 4


def random_gpt2_tensors(prefix="transformer.", seed=0):
    """Random tensors in the Hugging Face GPT-2 layout, Conv1D weights shaped (in, out)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g) * 0.1

    t = {"wte.weight": r(V, C), "wpe.weight": r(T, C), "ln_f.weight": r(C), "ln_f.bias": r(C)}
    for i in range(L):
        t |= {
            f"h.{i}.ln_1.weight": r(C), f"h.{i}.ln_1.bias": r(C),
            f"h.{i}.attn.c_attn.weight": r(C, 3 * C), f"h.{i}.attn.c_attn.bias": r(3 * C),
            f"h.{i}.attn.c_proj.weight": r(C, C), f"h.{i}.attn.c_proj.bias": r(C),
            f"h.{i}.ln_2.weight": r(C), f"h.{i}.ln_2.bias": r(C),
            f"h.{i}.mlp.c_fc.weight": r(C, 4 * C), f"h.{i}.mlp.c_fc.bias": r(4 * C),
            f"h.{i}.mlp.c_proj.weight": r(4 * C, C), f"h.{i}.mlp.c_proj.bias": r(C),
            f"h.{i}.attn.bias": torch.tril(torch.ones(1, 1, T, T)),  # an old mask buffer
        }  # fmt: skip
    return {prefix + k: v for k, v in t.items()}


def write(tmp_path, tensors, n_head=H):
    save_file(tensors, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"n_head": n_head}))
    return tmp_path


@pytest.mark.parametrize("prefix", ["transformer.", ""])
def test_import_maps_every_weight_and_export_gives_it_back(tmp_path, prefix):
    tensors = random_gpt2_tensors(prefix)
    (tmp_path / "in").mkdir()
    model = load_gpt2(write(tmp_path / "in", tensors))
    assert (model.config.n_layer, model.config.n_head, model.config.block_size) == (L, H, T)
    exported = to_gpt2_state_dict(model)
    originals = {
        k.removeprefix(prefix): v for k, v in tensors.items() if not k.endswith(".attn.bias")
    }
    assert {k.removeprefix("transformer.") for k in exported} == originals.keys()
    for name, t in exported.items():
        assert torch.equal(t, originals[name.removeprefix("transformer.")]), name

    reimported = load_gpt2(save_gpt2(model, tmp_path / "out"))
    idx = torch.randint(0, V, (2, T))
    assert torch.equal(model.eval()(idx)[0], reimported.eval()(idx)[0])


def test_logits_match_hugging_face_gpt2(tmp_path):
    import transformers  # the dev extra: never skipped

    model = load_gpt2(write(tmp_path, random_gpt2_tensors()))
    hf = transformers.GPT2LMHeadModel.from_pretrained(save_gpt2(model, tmp_path / "hf")).eval()
    idx = torch.randint(0, V, (2, T))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(idx)[0], hf(idx).logits, atol=1e-4, rtol=1e-4)


def test_incomplete_or_foreign_weights_are_rejected(tmp_path):
    tensors = random_gpt2_tensors()
    del tensors["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(ValueError, match="h.1.mlp.c_fc.bias"):
        load_gpt2(write(tmp_path, tensors))
    with pytest.raises(ValueError, match="not GPT-2 weights"):
        load_gpt2(write(tmp_path, {"embed.weight": torch.zeros(3, 3)}))
    with pytest.raises(FileNotFoundError, match="download"):
        load_gpt2(tmp_path / "nowhere")
