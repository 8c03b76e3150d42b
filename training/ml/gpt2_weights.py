"""GPT-2 weights in the Hugging Face layout: import from a local `model.safetensors`, export back.

Our GPT uses GPT-2's own module names, so the mapping is short:
- Hugging Face names carry a `transformer.` prefix (GPT2LMHeadModel) or none (the original
  openai-community/gpt2 upload); both are read, `transformer.` is written.
- GPT-2 stores its four projections as `Conv1D` weights shaped (in, out); `nn.Linear` wants
  (out, in), so those are transposed both ways.
- `attn.bias` / `attn.masked_bias` are causal-mask buffers in older files, not weights: skipped.
- `lm_head.weight` is tied to `wte.weight`; a file whose head differs cannot be represented.
The number of heads is not visible in the tensors: it comes from a Hugging Face `config.json`
next to the weights, the `n_head` argument, or GPT-2's sizes (768 -> 12 ... 1600 -> 25).

Nothing is downloaded: fetch the files yourself (e.g. `huggingface-cli download gpt2
model.safetensors config.json`) and point `load_gpt2` at them.
"""

import json
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from training.ml.gpt import GPT, GPTConfig

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
BUFFERS = (".attn.bias", ".attn.masked_bias")  # the dot: not c_attn.bias
GPT2_N_HEAD = {768: 12, 1024: 16, 1280: 20, 1600: 25}


def from_gpt2_state_dict(tensors: dict[str, torch.Tensor], *, n_head: int | None = None) -> GPT:
    """A GPT holding the Hugging Face GPT-2 `tensors`; every weight must be used."""
    hf = {name.removeprefix("transformer."): t for name, t in tensors.items()}
    hf = {name: t for name, t in hf.items() if not name.endswith(BUFFERS)}
    head = hf.pop("lm_head.weight", None)
    if head is not None and not torch.equal(head, hf.get("wte.weight", head)):
        raise ValueError("lm_head.weight differs from wte.weight: untied heads are not supported")
    if "wte.weight" not in hf or "wpe.weight" not in hf:
        raise ValueError("not GPT-2 weights: wte.weight / wpe.weight missing")
    vocab_size, n_embd = hf["wte.weight"].shape
    n_head = n_head or GPT2_N_HEAD.get(n_embd)
    if n_head is None:
        raise ValueError(f"cannot tell the number of heads for n_embd {n_embd}: pass n_head")
    layers = {int(m.group(1)) for name in hf if (m := re.match(r"h\.(\d+)\.", name))}
    config = GPTConfig(
        vocab_size=vocab_size,
        block_size=hf["wpe.weight"].shape[0],
        n_layer=max(layers) + 1 if layers else 0,
        n_head=n_head,
        n_embd=n_embd,
        bias="ln_f.bias" in hf,
    )
    ours = {f"transformer.{name}": t.t() if name.endswith(CONV1D) else t for name, t in hf.items()}
    model = GPT(config)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != "lm_head.weight"}
    problems = sorted(expected.keys() ^ ours.keys())
    problems += [k for k, shape in expected.items() if k in ours and ours[k].shape != shape]
    if problems:
        raise ValueError(f"GPT-2 weights do not fit {config}: {', '.join(problems[:5])}")
    model.load_state_dict(ours, strict=False)
    return model


def to_gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """The language model's weights under Hugging Face GPT-2 names (`score_head` is not part of
    GPT-2 and is left out; the tied `lm_head.weight` too, as `save_pretrained` does)."""
    out = {}
    for name, t in model.state_dict().items():
        if not name.startswith("transformer."):
            continue
        t = t.detach().cpu()
        out[name] = (t.t() if name.endswith(CONV1D) else t).contiguous()
    return out


def load_gpt2(path: str | os.PathLike, *, n_head: int | None = None) -> GPT:
    """Load `model.safetensors` (a file, or a directory holding one and maybe `config.json`)."""
    path = Path(path)
    file = path / "model.safetensors" if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"{file} not found: download GPT-2's model.safetensors first")
    hf_config = file.with_name("config.json")
    if n_head is None and hf_config.exists():
        n_head = json.loads(hf_config.read_text()).get("n_head")
    return from_gpt2_state_dict(load_file(file), n_head=n_head)


def save_gpt2(model: GPT, directory: str | os.PathLike) -> Path:
    """Write `model.safetensors` and a Hugging Face `config.json` that GPT2LMHeadModel loads."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(to_gpt2_state_dict(model), directory / "model.safetensors", metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(gpt2_hf_config(model.config), indent=2))
    return directory


def gpt2_hf_config(c: GPTConfig) -> dict:
    """The Hugging Face `config.json` dict of GPT2LMHeadModel for our config."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.block_size,
        "n_ctx": c.block_size,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": True,
    }
