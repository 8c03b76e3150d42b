"""GGUF import and export: the shipped SmolLM2 file against transformers' own GGUF loader, round
trips through `write_gguf` on tiny random Llamas (transformers loads what we write), and one
clear ValueError for each kind of bad file."""

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
import transformers  # the dev extra: never skipped

from training.ml import gguf_import
from training.ml.gguf_export import write_gguf
from training.ml.gguf_import import gguf_names, llama_tensor_shapes, read_gguf, unpermute_rope
from training.ml.shipped import shipped_model_path

TINY = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "rope_theta": 10000.0,
    "rms_norm_eps": 1e-05,
    "tie_word_embeddings": False,
    "hidden_act": "silu",
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
    "attention_bias": False,
}
# Variants of TINY, each as read_gguf returns it: GQA and untied (TINY), tied, q/k/v biases,
# a head size other than hidden/heads, linear and Llama-3 rope scaling.
VARIANTS = {
    "gqa-untied": {},
    "tied": {"tie_word_embeddings": True},
    "bias": {"attention_bias": True},
    "head-dim": {"head_dim": 16},
    "linear-rope": {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
    "llama3-rope": {
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    },
}


def smollm2_path() -> Path:
    return shipped_model_path()  # make install puts it in: never skipped


@pytest.fixture(scope="session")
def smollm2():
    return read_gguf(smollm2_path())


@pytest.fixture(scope="session")
def tiny_fields():
    """Tokenizer fields of every kind SmolLM2's file has (strings, string and int arrays, ids,
    a bool, the chat template), small enough to write and read in milliseconds."""
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens = specials + ["Ġ", "t", "a", "Ġt", "Ġa", "é", "日本"]
    tokens += [f"w{i}" for i in range(TINY["vocab_size"] - len(tokens))]
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "smollm",
        "tokenizer.ggml.tokens": tokens,  # as many as TINY's vocab_size: nothing to pad
        "tokenizer.ggml.token_type": [3] * len(specials) + [1] * (len(tokens) - len(specials)),
        "tokenizer.ggml.merges": ["Ġ t", "Ġ a"],
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.padding_token_id": 2,
        "tokenizer.ggml.add_bos_token": False,
        "tokenizer.chat_template": "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
        "{{ m['content'] }}<|im_end|>\n{% endfor %}",
    }


def tiny_llama(seed: int = 0, **overrides) -> tuple[dict, dict[str, torch.Tensor]]:
    """A random Llama small enough to write and read in milliseconds."""
    config = TINY | overrides
    g = torch.Generator().manual_seed(seed)
    tensors = {
        name: torch.randn(shape, generator=g) * 0.2 + (1.0 if "norm" in name else 0.0)
        for name, shape in llama_tensor_shapes(config).items()
    }
    return config, tensors


def write_tiny(path: Path, fields: dict, **overrides) -> Path:
    config, tensors = tiny_llama(**overrides)
    write_gguf(path, hf_config=config, tensors=tensors, tokenizer_fields=fields, dtype="f32")
    return path


def patch_string(path: Path, key: str, value: str) -> None:
    """Overwrite a string field of a GGUF in place (same length)."""
    field = gguf.GGUFReader(path, "r+").fields[key]
    field.parts[field.data[0]][:] = np.frombuffer(value.encode(), dtype=np.uint8)


def test_smollm2_matches_transformers_gguf_loader(smollm2):
    path = smollm2_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    theirs = model.state_dict()
    assert theirs.keys() - smollm2.tensors.keys() == {"lm_head.weight"}  # tied: not stored
    for name, ours in smollm2.tensors.items():
        assert ours.dtype == torch.float32
        assert torch.equal(ours, theirs[name]), name
    c, ref = smollm2.hf_config, model.config
    assert (
        (c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"])
        == (ref.hidden_size, ref.num_attention_heads, ref.num_key_value_heads)
        == (576, 9, 3)
    )
    assert (
        (c["num_hidden_layers"], c["intermediate_size"], c["vocab_size"])
        == (ref.num_hidden_layers, ref.intermediate_size, ref.vocab_size)
        == (30, 1536, 49152)
    )
    assert c["rope_theta"] == ref.rope_parameters["rope_theta"] == 100000.0
    assert c["rms_norm_eps"] == pytest.approx(ref.rms_norm_eps, rel=1e-6)
    assert c["rms_norm_eps"] == 1e-05  # the decimal in the model's config.json
    assert c["tie_word_embeddings"] is ref.tie_word_embeddings is True
    assert c["max_position_embeddings"] == ref.max_position_embeddings == 8192
    assert (c["bos_token_id"], c["eos_token_id"], c["pad_token_id"]) == (1, 2, 2)
    assert "head_dim" not in c and "rope_scaling" not in c


def test_smollm2_tokenizer_fields(smollm2):
    f = smollm2.tokenizer_fields
    assert (f["tokenizer.ggml.model"], f["tokenizer.ggml.pre"]) == ("gpt2", "smollm")
    assert len(f["tokenizer.ggml.tokens"]) == len(f["tokenizer.ggml.token_type"]) == 49152
    assert f["tokenizer.ggml.tokens"][:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert f["tokenizer.ggml.merges"][0] == "Ġ t"
    assert (f["tokenizer.ggml.bos_token_id"], f["tokenizer.ggml.eos_token_id"]) == (1, 2)
    assert f["tokenizer.ggml.padding_token_id"] == 2
    assert f["tokenizer.ggml.add_bos_token"] is False
    assert "<|im_start|>" in f["tokenizer.chat_template"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_f32_is_exact(variant, tiny_fields, tmp_path):
    config, tensors = tiny_llama(**VARIANTS[variant])
    path = tmp_path / "tiny.gguf"
    write_gguf(path, hf_config=config, tensors=tensors, tokenizer_fields=tiny_fields, dtype="f32")
    back = read_gguf(path)
    assert back.hf_config == config
    assert back.tokenizer_fields == tiny_fields
    assert back.tensors.keys() == tensors.keys()
    for name, t in tensors.items():
        assert torch.equal(back.tensors[name], t), name
    assert list(tmp_path.iterdir()) == [path]  # the temporary file is gone


def test_round_trip_f16_rounds_matrices_only(tiny_fields, tmp_path):
    config, tensors = tiny_llama(attention_bias=True)
    path = tmp_path / "tiny.gguf"
    write_gguf(path, hf_config=config, tensors=tensors, tokenizer_fields=tiny_fields, dtype="f16")
    back = read_gguf(path)
    assert back.hf_config == config
    assert back.tokenizer_fields == tiny_fields
    for name, t in tensors.items():
        expected = t.half().float() if t.dim() > 1 else t  # norms and biases stay F32
        assert torch.equal(back.tensors[name], expected), name
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(path).tensors}
    assert types["blk.0.attn_q.weight"] == "F16" and types["blk.0.attn_norm.weight"] == "F32"
    assert types["blk.0.attn_q.bias"] == "F32"


QUANT_TYPES = ["BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]  # those gguf can also quantize


def test_quantized_tensors_dequantize_as_gguf_does(tiny_fields, tmp_path, monkeypatch):
    """A tiny file re-encoded with a quant type per matrix reads back as gguf's dequantize of
    the whole tensor (then un-permuted), also when read a few rows at a time."""
    path = write_tiny(tmp_path / "f32.gguf", tiny_fields, intermediate_size=64)  # rows of 32k
    source = gguf.GGUFReader(path)
    writer = gguf.GGUFWriter(tmp_path / "q.gguf", "llama")
    for key, field in source.fields.items():
        if not key.startswith("GGUF.") and key != "general.architecture":
            item_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), field.types[0], sub_type=item_type)
    expected = {}
    for i, t in enumerate(source.tensors):
        data = np.array(t.data)
        if data.ndim == 2:
            qtype = gguf.GGMLQuantizationType[QUANT_TYPES[i % len(QUANT_TYPES)]]
            data = gguf.quants.quantize(data, qtype)
            writer.add_tensor(t.name, data, raw_dtype=qtype)
            expected[t.name] = torch.from_numpy(gguf.quants.dequantize(data, qtype))
        else:
            writer.add_tensor(t.name, data)
            expected[t.name] = torch.from_numpy(data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    monkeypatch.setattr(gguf_import, "DEQUANTIZE_CHUNK", 64)  # 1-2 rows at a time
    ours = read_gguf(tmp_path / "q.gguf").tensors
    types = {t.tensor_type.name for t in gguf.GGUFReader(tmp_path / "q.gguf").tensors}
    assert types == {"F32", *QUANT_TYPES}
    for i in range(TINY["num_hidden_layers"]):
        for gguf_name, n_head in ((f"blk.{i}.attn_q.weight", 4), (f"blk.{i}.attn_k.weight", 2)):
            expected[gguf_name] = unpermute_rope(expected[gguf_name], n_head)
    to_gguf = gguf_names(ours, "llama", TINY["num_hidden_layers"])
    assert sorted(to_gguf.values()) == sorted(expected)
    for name, t in ours.items():
        assert torch.equal(t, expected[to_gguf[name]]), name


def test_round_trip_of_a_tied_head_given_explicitly(tiny_fields, tmp_path):
    config, tensors = tiny_llama(tie_word_embeddings=True)
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]  # as state_dict() gives it
    write_gguf(
        tmp_path / "t.gguf",
        hf_config=config,
        tensors=tensors,
        tokenizer_fields=tiny_fields,
        dtype="f32",
    )
    names = {t.name for t in gguf.GGUFReader(tmp_path / "t.gguf").tensors}
    assert "output.weight" not in names and "token_embd.weight" in names


def test_token_list_padded_to_the_vocabulary_and_rope_parameters(tiny_fields, tmp_path):
    """A tokenizer shorter than the embedding gets llama.cpp's [PADn] tokens; transformers 5's
    `rope_parameters` is read like rope_theta + rope_scaling."""
    config, tensors = tiny_llama(vocab_size=66)
    config = {k: v for k, v in config.items() if k != "rope_theta"}
    config["rope_parameters"] = {"rope_type": "linear", "factor": 4.0, "rope_theta": 5e5}
    write_gguf(tmp_path / "t.gguf", hf_config=config, tensors=tensors, tokenizer_fields=tiny_fields)
    back = read_gguf(tmp_path / "t.gguf")
    tokens = back.tokenizer_fields["tokenizer.ggml.tokens"]
    assert tokens == tiny_fields["tokenizer.ggml.tokens"] + ["[PAD64]", "[PAD65]"]
    assert back.tokenizer_fields["tokenizer.ggml.token_type"][-2:] == [5, 5]  # UNUSED
    assert back.hf_config["rope_theta"] == 5e5
    assert back.hf_config["rope_scaling"] == {"rope_type": "linear", "factor": 4.0}


@pytest.mark.parametrize("variant", ["gqa-untied", "tied", "head-dim"])
def test_transformers_loads_what_we_write(variant, tiny_fields, tmp_path):
    config, tensors = tiny_llama(seed=1, **VARIANTS[variant])
    write_gguf(
        tmp_path / "tiny.gguf",
        hf_config=config,
        tensors=tensors,
        tokenizer_fields=tiny_fields,
        dtype="f32",
    )
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file="tiny.gguf")
    theirs = model.state_dict()
    assert model.config.num_key_value_heads == 2
    assert model.config.tie_word_embeddings is config["tie_word_embeddings"]
    for name, t in tensors.items():
        assert torch.equal(theirs[name], t), name


def test_qwen2_file_matches_transformers(tiny_fields, tmp_path):
    """A qwen2 GGUF: llama's tensors plus q/k/v biases, q/k not permuted. Made from a llama file
    by renaming its architecture and metadata keys in place (both names have 5 letters)."""
    path = write_tiny(tmp_path / "qwen2.gguf", tiny_fields, attention_bias=True)
    reader = gguf.GGUFReader(path, "r+")
    for key, field in reader.fields.items():
        if key.startswith("llama."):
            field.parts[1][:] = np.frombuffer(key.replace("llama.", "qwen2.").encode(), np.uint8)
    patch_string(path, "general.architecture", "qwen2")
    ours = read_gguf(path)
    assert ours.hf_config["model_type"] == "qwen2" and "attention_bias" not in ours.hf_config
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    theirs = model.state_dict()
    assert theirs.keys() == ours.tensors.keys()
    for name, t in ours.tensors.items():
        assert torch.equal(theirs[name], t), name


# Bad input: one ValueError naming the problem, raised from the header alone.


def test_not_a_gguf_file(tmp_path):
    text = tmp_path / "notes.gguf"
    text.write_text("just some text, not a model\n" * 10)
    with pytest.raises(ValueError, match="not a readable GGUF file"):
        read_gguf(text)
    with pytest.raises(ValueError, match="not a readable GGUF file"):
        read_gguf(tmp_path / "missing.gguf")


def test_another_architecture(tmp_path):
    writer = gguf.GGUFWriter(tmp_path / "gpt2.gguf", "gpt2")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match=r"architecture 'gpt2' is not supported.*llama, qwen2"):
        read_gguf(tmp_path / "gpt2.gguf")


def test_unsupported_tokenizer_model(tiny_fields, tmp_path):
    path = write_tiny(tmp_path / "t.gguf", tiny_fields)
    patch_string(path, "tokenizer.ggml.model", "bert")  # WordPiece, same length as gpt2
    with pytest.raises(ValueError, match="tokenizer model 'bert' is not supported"):
        read_gguf(path)


def test_shapes_that_do_not_match_the_metadata(tiny_fields, tmp_path):
    path = write_tiny(tmp_path / "t.gguf", tiny_fields)
    field = gguf.GGUFReader(path, "r+").fields["llama.feed_forward_length"]
    field.parts[field.data[0]][0] = 40  # the tensors are 48 wide
    with pytest.raises(
        ValueError,
        match=r"shapes do not match.*ffn_gate.weight is \(48, 32\), "
        r"the metadata implies \(40, 32\)",
    ):
        read_gguf(path)


def test_missing_tensor(tiny_fields, tmp_path):
    path = write_tiny(tmp_path / "t.gguf", tiny_fields)
    reader = gguf.GGUFReader(path, "r+")
    up = next(t for t in reader.tensors if t.name == "blk.1.ffn_up.weight")
    up.field.parts[1][:] = np.frombuffer(b"blk.1.ffn_xx.weight", dtype=np.uint8)  # renamed
    with pytest.raises(ValueError, match=r"missing required tensors: blk\.1\.ffn_up\.weight"):
        read_gguf(path)


def test_quant_type_gguf_cannot_dequantize(tiny_fields, tmp_path):
    path = write_tiny(tmp_path / "t.gguf", tiny_fields)
    reader = gguf.GGUFReader(path, "r+")
    norm = next(t for t in reader.tensors if t.name == "blk.0.attn_norm.weight")
    norm.field.parts[4][0] = gguf.GGMLQuantizationType.I32  # same size as F32
    with pytest.raises(ValueError, match=r"cannot dequantize: blk\.0\.attn_norm\.weight \(I32\)"):
        read_gguf(path)


def test_write_refuses_bad_input_and_leaves_no_file(tiny_fields, tmp_path):
    config, tensors = tiny_llama()
    fields = tiny_fields
    path = tmp_path / "out.gguf"
    with pytest.raises(ValueError, match=r"model\.norm\.weight is \(31,\), the config implies"):
        write_gguf(
            path,
            hf_config=config,
            tokenizer_fields=fields,
            tensors=tensors | {"model.norm.weight": torch.ones(31)},
        )
    with pytest.raises(ValueError, match="tokenizer model 'llama' is not supported"):
        write_gguf(
            path,
            hf_config=config,
            tensors=tensors,
            tokenizer_fields=fields | {"tokenizer.ggml.model": "llama"},
        )
    with pytest.raises(ValueError, match="the tokenizer has 64 tokens, the model only 60 rows"):
        small, small_tensors = tiny_llama(vocab_size=60)
        write_gguf(path, hf_config=small, tensors=small_tensors, tokenizer_fields=fields)
    with pytest.raises(ValueError, match="model_type 'gpt2' cannot be written"):
        write_gguf(
            path,
            hf_config=config | {"model_type": "gpt2"},
            tensors=tensors,
            tokenizer_fields=fields,
        )
    with pytest.raises(ValueError, match="exceeds float16's range"):  # found while writing
        write_gguf(
            path,
            hf_config=config,
            tokenizer_fields=fields,
            dtype="f16",
            tensors=tensors | {"lm_head.weight": tensors["lm_head.weight"] * 1e6},
        )
    assert list(tmp_path.iterdir()) == []
