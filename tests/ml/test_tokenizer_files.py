"""Real models' vocabularies through tiktoken: the same ids as the `tokenizers` library on 10,000+
strings (stdlib docstrings and random unicode), for the shipped SmolLM2 GGUF and for byte-level
BPEs trained offline with each supported pre-tokenizer; export to tokenizer.json and GGUF fields
and back."""

import json
import unicodedata

import pytest
import regex
from tokenizer_refs import corpus, smollm2_fields, smollm2_hf, trained_hf
from transformers import AutoTokenizer

from training.ml.model_export import gguf_tokenizer_fields, save_hf_tokenizer
from training.ml.tokenizer import ChatTokenizer
from training.ml.tokenizer_files import (
    PRE_TOKENIZERS,
    R50K_PATTERN,
    RUSTBPE_PATTERN,
    bpe_ranks,
    merges_from_ranks,
    pre_tokenizer_from_gguf,
    pre_tokenizer_from_hf,
    read_tokenizer_json,
    spell,
    unspell,
)

TRAINED_CONFIG = {
    "gpt2": {"eos_token": "<|endoftext|>"},
    "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"},
    "qwen2": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
}  # fmt: skip


@pytest.fixture(scope="module")
def smollm2():
    return ChatTokenizer.from_gguf_fields(smollm2_fields(), name="smollm2")


def trained(kind: str) -> ChatTokenizer:
    config = {"chat_template": _LLAMA3_MINIMAL} if kind == "llama3" else {}
    config = {**TRAINED_CONFIG[kind], **config}
    return ChatTokenizer.from_hf_files(json.loads(trained_hf(kind).to_str()), config)


# Enough of Llama-3's layout for the format check; the real template is in test_chat_format.py.
_LLAMA3_MINIMAL = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + "
    "'<|end_header_id|>\n\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)


def assert_same_ids(ours: ChatTokenizer, reference, strings) -> None:
    expected = [e.ids for e in reference.encode_batch(list(strings), add_special_tokens=False)]
    for text, want in zip(strings, expected, strict=True):
        assert ours.encode(text) == want, f"{text!r}"


def assert_round_trips(tokenizer: ChatTokenizer, strings) -> None:
    absent = set(tokenizer._absent)
    for text in strings:
        if any(b in absent for b in text.encode()):
            continue  # bytes the vocabulary lacks are dropped, as the model's tokenizer does
        normal = unicodedata.normalize("NFC", text) if tokenizer.normalizer else text
        assert tokenizer.decode(tokenizer.encode(text)) == normal


def test_smollm2_gguf_encodes_as_its_tokenizer(smollm2):
    strings = corpus()
    assert len(strings) >= 10_000
    assert_same_ids(smollm2, smollm2_hf().backend_tokenizer, strings)
    assert_round_trips(smollm2, strings)
    assert smollm2.vocab_size == 49152
    assert (smollm2.bos_id, smollm2.eot_id, smollm2.end_id, smollm2.pad_id) == (1, 2, 2, 2)
    assert smollm2.chat_format.kind == "chatml"


@pytest.mark.parametrize("kind", ["gpt2", "llama3", "qwen2"])
def test_trained_bpe_encodes_as_tokenizers(kind):
    ours = trained(kind)
    assert ours.bpe_vocab().pre.kind == kind
    assert ours.normalizer == ("NFC" if kind == "qwen2" else None)
    strings = corpus()
    assert_same_ids(ours, trained_hf(kind), strings)
    assert_round_trips(ours, strings)


@pytest.mark.parametrize("kind", ["gpt2", "smollm", "llama3", "qwen2"])
def test_patterns_split_as_the_pre_tokenizers(kind):
    from tokenizer_refs import _pre_tokenizer

    pre = PRE_TOKENIZERS[kind]
    hf = _pre_tokenizer(pre.hf)
    for text in corpus()[-1500:]:
        want = [piece for piece, _ in hf.pre_tokenize_str(text)]
        assert [spell(p.encode()) for p in regex.findall(pre.pattern, text)] == want, f"{text!r}"


@pytest.mark.parametrize(
    "alias, kind", [(RUSTBPE_PATTERN, "llama3"), (R50K_PATTERN, "gpt2")], ids=["rustbpe", "r50k"]
)
def test_pattern_aliases_split_as_their_kind(alias, kind):
    canonical = PRE_TOKENIZERS[kind].pattern
    for text in corpus()[::3]:
        assert regex.findall(alias, text) == regex.findall(canonical, text), f"{text!r}"


@pytest.mark.parametrize("source", ["smollm2", "gpt2", "qwen2", "ours"])
def test_save_hf_tokenizer_loads_in_transformers(source, smollm2, tiny_tokenizer, tmp_path):
    ours = {"smollm2": smollm2, "ours": tiny_tokenizer}.get(source) or trained(source)
    save_hf_tokenizer(ours, tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    strings = corpus()[::5]
    assert_same_ids(ours, hf.backend_tokenizer, strings)
    assert hf.chat_template == ours.chat_format.template
    assert (hf.eos_token_id, hf.pad_token_id) == (ours.eot_id, ours.pad_id)
    dialogue = [
        {"role": "user", "content": "Sort a list in place? 2 ways"},
        {"role": "assistant", "content": "Use  list.sort() or sorted(xs).\n"},
        {"role": "user", "content": "Thanks!"},
    ]
    rendered = hf.apply_chat_template(dialogue, tokenize=True, add_generation_prompt=True)
    assert list(rendered["input_ids"]) == ours.render_prompt(dialogue)
    again = ChatTokenizer.from_hf_files(
        json.loads((tmp_path / "tokenizer.json").read_text()),
        json.loads((tmp_path / "tokenizer_config.json").read_text()),
    )
    assert again.render_dialogue(dialogue + [{"role": "assistant", "content": "ok"}]) == (
        ours.render_dialogue(dialogue + [{"role": "assistant", "content": "ok"}])
    )


@pytest.mark.parametrize("source", ["smollm2", "ours", "qwen2"])
def test_gguf_fields_round_trip(source, smollm2, tiny_tokenizer):
    ours = {"smollm2": smollm2, "ours": tiny_tokenizer}.get(source) or trained(source)
    fields = gguf_tokenizer_fields(ours)
    assert fields["tokenizer.ggml.model"] == "gpt2"
    assert len(fields["tokenizer.ggml.tokens"]) == ours.vocab_size
    again = ChatTokenizer.from_gguf_fields(fields)
    for text in corpus()[::20]:
        assert again.encode(text) == ours.encode(text)
    assert (again.bos_id, again.eot_id, again.end_id, again.pad_id, again.normalizer) == (
        ours.bos_id, ours.eot_id, ours.end_id, ours.pad_id, ours.normalizer)  # fmt: skip
    assert again.chat_format.template == ours.chat_format.template
    if source == "smollm2":  # the same vocabulary and ids llama.cpp reads from the file
        original = smollm2_fields()
        for key in ("tokens", "token_type", "pre", "bos_token_id", "eos_token_id"):
            assert fields[f"tokenizer.ggml.{key}"] == original[f"tokenizer.ggml.{key}"], key


def test_derived_merges_rebuild_the_ranks(smollm2):
    ranks = smollm2.encoding._mergeable_ranks
    merges = merges_from_ranks(ranks)
    vocab = {spell(t): i for t, i in ranks.items()}
    assert bpe_ranks(vocab, [(spell(a), spell(b)) for a, b in merges]) == ranks


# -- refusals ---------------------------------------------------------------------------------


def tiny_json(**changes) -> dict:
    """A byte-level BPE tokenizer.json with the merges "a b" -> "ab", "ab c" -> "abc"."""
    vocab = {spell(bytes([b])): b for b in range(256)}
    vocab |= {"ab": 256, "abc": 257}
    data = {
        "added_tokens": [{"id": 258, "content": "<|endoftext|>", "special": True}],
        "normalizer": None,
        "pre_tokenizer": PRE_TOKENIZERS["gpt2"].hf,
        "model": {"type": "BPE", "vocab": vocab, "merges": ["a b", "ab c"]},
    }
    for key, value in changes.items():
        target = data["model"] if key in ("type", "vocab", "merges", "byte_fallback") else data
        target[key] = value
    return data


def test_tiny_json_is_accepted():
    t = ChatTokenizer.from_hf_files(tiny_json())
    assert t.encode("abc ab") == [257, 32, 256] and t.eot_id == 258


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"merges": ["ab c", "a b"]}, "not in merge order"),
        ({"merges": ["a b"]}, "made by no merge"),
        ({"merges": ["a x", "ab c"]}, "not in the vocabulary"),
        ({"type": "WordPiece"}, "only BPE"),
        ({"byte_fallback": True}, "byte_fallback"),
        ({"normalizer": {"type": "NFKC"}}, "unsupported normalizer"),
        ({"pre_tokenizer": {"type": "Metaspace", "replacement": "▁"}}, "Metaspace"),
        ({"vocab": {"▁the": 0}, "merges": []}, "byte-level alphabet"),
    ],
)
def test_unsupported_tokenizer_json_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        read_tokenizer_json(tiny_json(**changes))


def test_unknown_pre_tokenizer_names_are_refused():
    assert pre_tokenizer_from_gguf("llama-bpe").kind == "llama3"
    with pytest.raises(ValueError, match="'falcon'"):
        pre_tokenizer_from_gguf("falcon")
    split = {"type": "Split", "pattern": {"Regex": r"\w+"}, "behavior": "Isolated"}
    with pytest.raises(ValueError, match=r"\\\\w\+"):
        pre_tokenizer_from_hf(split)


def test_unspell_names_the_offending_character():
    assert unspell("Ġthe") == b" the"
    with pytest.raises(ValueError, match="'▁'"):
        unspell("▁the")


def test_added_tokens_that_are_not_control_tokens_decode_as_text(tmp_path):
    data = tiny_json()
    data["added_tokens"].append({"id": 259, "content": "<tool_call>", "special": False})
    t = ChatTokenizer.from_hf_files(data)
    tool, eot = t.encoding.encode_single_token("<tool_call>"), t.eot_id
    assert t.decode([257, tool, eot]) == "abc<tool_call>"
    assert t.encode("<tool_call>") != [tool]  # user text never makes an added token
    fields = gguf_tokenizer_fields(t)
    assert fields["tokenizer.ggml.token_type"][258:] == [3, 4]  # CONTROL, USER_DEFINED
    assert ChatTokenizer.from_gguf_fields(fields).plain_tokens == {"<tool_call>"}
    save_hf_tokenizer(t, tmp_path)
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert hf.decode([257, tool, eot], skip_special_tokens=True) == "abc<tool_call>"
    t.save(tmp_path / "ours.json")
    assert ChatTokenizer.load(tmp_path / "ours.json").decode([tool]) == "<tool_call>"
