import json

import pytest
import torch
import transformers  # the dev extra: never skipped
from safetensors.torch import load_file
from test_llama import V, ours_from, random_hf_model

from training.ml.gpt import GPT, GPTConfig
from training.ml.hf_models import hf_config_for, model_from_hf, read_hf_directory, save_hf_model
from training.ml.llama import Llama
from training.ml.sampling import SampleConfig, generate

IDS = dict(bos_id=1, eos_id=2, pad_id=0)


def logits(model, idx):
    with torch.no_grad():
        out = model(idx)
    return out.logits if hasattr(out, "logits") else out[0]


@pytest.mark.parametrize("family, shard_size", [("llama-gqa-llama3", None), ("qwen2-tied", "40KB")])
def test_a_transformers_directory_loads_with_the_same_logits(tmp_path, family, shard_size):
    hf = random_hf_model(family)
    kwargs = {"max_shard_size": shard_size} if shard_size else {}
    hf.save_pretrained(tmp_path, **kwargs)
    assert (tmp_path / "model.safetensors.index.json").exists() == bool(shard_size)
    model = model_from_hf(*read_hf_directory(tmp_path)).eval()
    assert isinstance(model, Llama)
    idx = torch.randint(0, V, (2, 40), generator=torch.Generator().manual_seed(0))
    assert (logits(model, idx) - logits(hf, idx)).abs().max() < 1e-4


@pytest.mark.parametrize("family", ["llama-gqa-llama3", "llama-tied-linear", "qwen2-tied"])
def test_our_export_loads_in_transformers_and_greedy_tokens_agree(tmp_path, family):
    ours = ours_from(random_hf_model(family, seed=1))
    save_hf_model(ours, tmp_path, **IDS)
    config = json.loads((tmp_path / "config.json").read_text())
    expected_type = "qwen2" if family.startswith("qwen2") else "llama"
    assert config["model_type"] == expected_type
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, 0)
    assert config["torch_dtype"] == "float32" and config["attention_dropout"] == 0.0
    assert config["tie_word_embeddings"] == ours.config.tie_embeddings
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    assert generation == {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}

    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(hf).__name__ == config["architectures"][0]
    prompt = [5, 17, 33, 8, 90, 41]
    ours_out = generate(
        ours, [prompt], SampleConfig(max_new_tokens=16, temperature=0), stop_id=2, pad_id=0
    )
    with torch.no_grad():
        hf_out = hf.generate(torch.tensor([prompt]), max_new_tokens=16, do_sample=False)
    hf_tokens = hf_out[0, len(prompt) :].tolist()
    hf_tokens = hf_tokens[: hf_tokens.index(2) + 1] if 2 in hf_tokens else hf_tokens
    assert ours_out.responses[0] == hf_tokens
    # Random tied models tend to repeat one token: the logits carry the comparison too.
    idx = torch.tensor([prompt + hf_tokens])
    assert (logits(ours, idx) - logits(hf, idx)).abs().max() < 1e-4


def test_gpt2_goes_through_the_gpt2_weights_module(tmp_path):
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=V, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    save_hf_model(gpt, tmp_path, **IDS)
    assert hf_config_for(gpt, **IDS)["model_type"] == "gpt2"
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    back = model_from_hf(*read_hf_directory(tmp_path)).eval()
    idx = torch.randint(0, V, (2, 32))
    assert isinstance(back, GPT) and torch.equal(logits(back, idx), logits(gpt, idx))
    assert (logits(hf, idx) - logits(gpt, idx)).abs().max() < 1e-4


def test_scalar_head_is_left_out_and_inv_freq_buffers_are_ignored(tmp_path):
    scored = Llama.with_scalar_head(ours_from(random_hf_model("llama-tied-linear")))
    save_hf_model(scored, tmp_path, **IDS)
    tensors = load_file(tmp_path / "model.safetensors")
    assert not any(name.startswith(("score_head", "lm_head")) for name in tensors)
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(16)  # older files
    back = model_from_hf(json.loads((tmp_path / "config.json").read_text()), tensors)
    assert back.lm_head.weight is back.model.embed_tokens.weight  # still tied after loading
    assert torch.equal(back.lm_head.weight, scored.lm_head.weight)


def test_bad_directories_and_weights_say_what_is_wrong(tmp_path):
    hf = random_hf_model("llama-gqa-llama3")
    with pytest.raises(ValueError, match="config.json not found"):
        read_hf_directory(tmp_path)
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    hf_config, tensors = read_hf_directory(tmp_path)

    shard = sorted(tmp_path.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(ValueError, match=f"shard {shard.name} .* missing"):
        read_hf_directory(tmp_path)
    (tmp_path / "model.safetensors.index.json").unlink()
    with pytest.raises(ValueError, match="no model.safetensors"):
        read_hf_directory(tmp_path)

    with pytest.raises(ValueError, match="unsupported model_type 'gemma2'"):
        model_from_hf({**hf_config, "model_type": "gemma2"}, tensors)
    narrow = {**tensors, "model.layers.1.self_attn.k_proj.weight": torch.zeros(16, 64)}
    with pytest.raises(ValueError, match=r"k_proj.weight is \(16, 64\), the config needs \(32, 64"):
        model_from_hf(hf_config, narrow)
    incomplete = {k: v for k, v in tensors.items() if k != "lm_head.weight"}
    with pytest.raises(ValueError, match="missing lm_head.weight"):
        model_from_hf(hf_config, incomplete)
    with pytest.raises(ValueError, match="unexpected score.weight"):  # another head's weights
        model_from_hf(hf_config, {**tensors, "score.weight": torch.zeros(1, 64)})
