"""Hugging Face model directories: read one into our model, write ours as one.

A directory holds `config.json` and the weights in `model.safetensors`, or in shards listed by
`model.safetensors.index.json`. Llama, Qwen2 and Mistral become our `Llama` (whose parameter
names are Hugging Face's, so the tensors load as they are); GPT-2 becomes our `GPT` through
`training.ml.gpt2_weights`. Nothing is downloaded: fetch the directory yourself (e.g.
`huggingface-cli download HuggingFaceTB/SmolLM2-135M-Instruct`).

`save_hf_model` writes the reverse: config.json, model.safetensors and generation_config.json,
which `transformers.AutoModelForCausalLM.from_pretrained` loads as they are. A Llama with q/k/v
biases is written as Qwen2 (the one family of the three that has them), any other as Llama (a
Mistral whose window we capped is a Llama). Tokenizer files are the tokenizer's business
(`save_hf_tokenizer`). The scalar head has no place in a causal-LM directory and is left out.
"""

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from training.ml.gpt import GPT
from training.ml.gpt2_weights import from_gpt2_state_dict, gpt2_hf_config, to_gpt2_state_dict
from training.ml.llama import Llama, LlamaConfig

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
BUFFERS = ("rotary_emb.inv_freq",)  # saved by older transformers versions; not weights


def read_hf_directory(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json as a dict, every tensor of the single or sharded safetensors weights)."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{config_file} not found: not a Hugging Face model directory")
    hf_config = json.loads(config_file.read_text())
    if (path / SINGLE_FILE).is_file():
        return hf_config, load_file(path / SINGLE_FILE)
    if not (path / INDEX_FILE).is_file():
        raise ValueError(
            f"no {SINGLE_FILE} or {INDEX_FILE} in {path}: only safetensors weights are read "
            "(convert a pytorch_model.bin with transformers' save_pretrained)"
        )
    weight_map = json.loads((path / INDEX_FILE).read_text())["weight_map"]
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        if not (path / shard).is_file():
            raise ValueError(f"shard {shard} listed in {INDEX_FILE} is missing from {path}")
        tensors.update(load_file(path / shard))
    return hf_config, tensors


def model_from_hf(hf_config: dict, tensors: dict[str, torch.Tensor]) -> Llama | GPT:
    """Our model holding `tensors` (any float dtype; the model is float32). Every weight the
    config calls for must be there with its shape, and nothing else."""
    if hf_config.get("model_type") == "gpt2":
        return from_gpt2_state_dict(tensors, n_head=hf_config.get("n_head"))
    config = LlamaConfig.from_hf(hf_config)  # rejects other model types
    tensors = {name: t for name, t in tensors.items() if not name.endswith(BUFFERS)}
    with torch.device("meta"):  # no random init of weights about to be replaced
        model = Llama(config)
    expected = {name: p.shape for name, p in model.state_dict().items()}
    if config.tie_embeddings:
        head = tensors.pop("lm_head.weight", None)
        embed = tensors.get("model.embed_tokens.weight")
        if head is not None and embed is not None and not torch.equal(head, embed):
            raise ValueError("config ties the embeddings but lm_head.weight differs from them")
        del expected["lm_head.weight"]
    problems = [f"missing {name}" for name in expected if name not in tensors]
    problems += [f"unexpected {name}" for name in tensors if name not in expected]
    problems += [
        f"{name} is {tuple(t.shape)}, the config needs {tuple(expected[name])}"
        for name, t in tensors.items()
        if name in expected and t.shape != expected[name]
    ]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValueError(f"weights do not fit the config: {'; '.join(problems[:5])}{more}")
    weights = {name: t.to(torch.float32).contiguous() for name, t in tensors.items()}
    model.load_state_dict(weights, strict=False, assign=True)
    if config.tie_embeddings:  # assign=True replaced the shared Parameter on one side only
        model.lm_head.weight = model.model.embed_tokens.weight
    return model


def hf_config_for(model: Llama | GPT, *, bos_id: int, eos_id: int, pad_id: int) -> dict:
    """The Hugging Face `config.json` dict for our model, with its special token ids."""
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    ids = {"bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id}
    if isinstance(model, GPT):
        no_dropout = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
        return {**gpt2_hf_config(model.config), **no_dropout, **ids, "torch_dtype": dtype}
    c = model.config
    model_type = "qwen2" if c.qkv_bias else "llama"
    rope_parameters = {"rope_type": "default", **(c.rope_scaling or {}), "rope_theta": c.rope_theta}
    config = {
        "architectures": ["Qwen2ForCausalLM" if c.qkv_bias else "LlamaForCausalLM"],
        "model_type": model_type,
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.block_size,
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_kv_head,
        "hidden_size": c.n_embd,
        "intermediate_size": c.intermediate_size,
        "head_dim": c.head_dim,
        "hidden_act": "silu",
        "rms_norm_eps": c.norm_eps,
        # transformers 5 reads rope_parameters; 4 (and llama.cpp's converter) rope_theta and
        # rope_scaling. Both say the same.
        "rope_parameters": rope_parameters,
        "rope_theta": c.rope_theta,
        "rope_scaling": c.rope_scaling,
        "tie_word_embeddings": c.tie_embeddings,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        **ids,
        "torch_dtype": dtype,
    }
    if model_type == "qwen2":
        config |= {"use_sliding_window": False, "sliding_window": None}
    else:
        config |= {"attention_bias": False, "mlp_bias": False}
    return config


def save_hf_model(
    model: Llama | GPT, directory: str | os.PathLike, *, bos_id: int, eos_id: int, pad_id: int
) -> Path:
    """Write config.json, model.safetensors and generation_config.json into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(model, GPT):
        tensors = to_gpt2_state_dict(model)
    else:
        # safetensors refuses two names for one tensor: a tied head is written once, as the
        # embeddings (save_pretrained does the same).
        skip = ("score_head.", "lm_head.") if model.config.tie_embeddings else ("score_head.",)
        tensors = {
            name: t.detach().cpu().contiguous()
            for name, t in model.state_dict().items()
            if not name.startswith(skip)
        }
    save_file(tensors, directory / SINGLE_FILE, metadata={"format": "pt"})
    config = hf_config_for(model, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    generation = {"bos_token_id": bos_id, "eos_token_id": eos_id, "pad_token_id": pad_id}
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return directory
