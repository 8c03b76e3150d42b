"""Real models' byte-level BPE vocabularies as tiktoken ranks, and back.

A Hugging Face `tokenizer.json` and a GGUF's `tokenizer.ggml.*` fields describe the same thing:
tokens spelled in GPT-2's byte-to-unicode alphabet (so "Ġthe" is the bytes b" the"), merges in
priority order, control tokens kept whole ("<|im_end|>"), and a pre-tokenizer, the regex that cuts
text into pieces before the merges run. tiktoken encodes such a vocabulary when a token's id is its
rank, i.e. when merged tokens' ids grow in merge order, as they do in vocabularies trained by
`tokenizers` or tiktoken. `read_tokenizer_json` and
`read_gguf_vocab` check that and raise a ValueError naming the first token that breaks it.

The other way, `tokenizer_json` and `gguf_vocab_fields` write a vocabulary whose merges are derived
from the ranks as transformers' TikTokenConverter does: every split of a token into two tokens is
a merge, ordered by the token's rank, with `ignore_merges` on, which is exactly tiktoken's rule.

Pre-tokenizers are known by kind (`PRE_TOKENIZERS`): the regex tiktoken runs, llama.cpp's name for
it (`tokenizer.ggml.pre`) and the `tokenizer.json` pre-tokenizer that does the same. An unknown one
is a ValueError: a wrong split gives wrong ids without any other sign.
"""

import functools
import json
from dataclasses import dataclass

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# SmolLM2 splits digits apart (`Digits(individual_digits)`) and then runs GPT-2's regex on the
# rest. In one regex: a digit never takes a leading space, and the whitespace run before a digit
# stays one piece, as it does when it ends a chunk of its own.
SMOLLM_PATTERN = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?=\p{N})|\s+(?!\S)|\s+"""
)
LLAMA3_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN2_PATTERN = LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")
# rustbpe's GPT-4 pattern (our `train_tokenizer`): the same splits as Llama-3's, written with
# possessive quantifiers and `\s*[\r\n]`, which match exactly what the greedy forms match.
RUSTBPE_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)

# tiktoken's own "gpt2" pattern: GPT-2's splits, written for speed (possessive, `\s++$`).
R50K_PATTERN = (
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
)

# GGUF token types (llama.cpp's llama_token_type)
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class PreTokenizer:
    """One way of cutting text into pieces, in the three notations that name it."""

    kind: str
    pattern: str  # the regex tiktoken runs
    gguf_names: tuple[str, ...]  # llama.cpp's names; the first is written
    hf: dict  # the tokenizer.json "pre_tokenizer" that splits the same way
    normalizer: str | None = None  # what a GGUF of this kind implies (HF files say it themselves)


def _byte_level(use_regex: bool) -> dict:
    return {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": True,
        "use_regex": use_regex,
    }


def _split_then_bytes(pattern: str) -> dict:
    split = {
        "type": "Split",
        "pattern": {"Regex": pattern},
        "behavior": "Isolated",
        "invert": False,
    }
    return {"type": "Sequence", "pretokenizers": [split, _byte_level(False)]}


PRE_TOKENIZERS = {
    p.kind: p
    for p in (
        PreTokenizer("gpt2", GPT2_PATTERN, ("gpt-2", "gpt2"), _byte_level(True)),
        PreTokenizer(
            "smollm",
            SMOLLM_PATTERN,
            ("smollm",),
            {
                "type": "Sequence",
                "pretokenizers": [{"type": "Digits", "individual_digits": True}, _byte_level(True)],
            },
        ),
        PreTokenizer(
            "llama3",
            LLAMA3_PATTERN,
            ("llama-bpe", "llama3", "llama-v3", "smaug-bpe"),
            _split_then_bytes(LLAMA3_PATTERN),
        ),
        PreTokenizer(
            "qwen2",
            QWEN2_PATTERN,
            ("qwen2", "deepseek-r1-qwen"),
            _split_then_bytes(QWEN2_PATTERN),
            normalizer="NFC",
        ),
    )
}
_BY_PATTERN = {
    **{p.pattern: p for p in PRE_TOKENIZERS.values()},
    RUSTBPE_PATTERN: PRE_TOKENIZERS["llama3"],
    R50K_PATTERN: PRE_TOKENIZERS["gpt2"],
}


def pre_tokenizer_for_pattern(pattern: str) -> PreTokenizer:
    """The known pre-tokenizer that splits as `pattern` does (to export a tiktoken encoding)."""
    try:
        return _BY_PATTERN[pattern]
    except KeyError:
        raise ValueError(
            f"no known pre-tokenizer splits text as the pattern {pattern!r}: known kinds are "
            f"{sorted(PRE_TOKENIZERS)}"
        ) from None


def pre_tokenizer_from_hf(pre: dict | None) -> PreTokenizer:
    """The kind of a tokenizer.json "pre_tokenizer" (compared without `trim_offsets`, which only
    moves offsets)."""

    def canonical(node):
        if isinstance(node, dict):
            return {k: canonical(v) for k, v in node.items() if k != "trim_offsets"}
        if isinstance(node, list):
            return [canonical(v) for v in node]
        return node

    for p in PRE_TOKENIZERS.values():
        if canonical(pre) == canonical(p.hf):
            return p
    raise ValueError(
        f"unsupported pre-tokenizer {json.dumps(pre)}: supported are byte-level BPE splits of "
        f"the kinds {sorted(PRE_TOKENIZERS)}"
    )


def pre_tokenizer_from_gguf(name: str) -> PreTokenizer:
    for p in PRE_TOKENIZERS.values():
        if name in p.gguf_names:
            return p
    known = sorted(n for p in PRE_TOKENIZERS.values() for n in p.gguf_names)
    raise ValueError(f"unsupported tokenizer.ggml.pre {name!r}: supported are {known}")


# -- the byte-level alphabet ----------------------------------------------------------------


@functools.cache
def byte_alphabet() -> tuple[str, ...]:
    """GPT-2's `bytes_to_unicode`: byte b is spelled `byte_alphabet()[b]`, a printable character
    (printable Latin-1 bytes as themselves, the others shifted to U+0100 and up)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    spelling, shifted = {}, 0
    for b in range(256):
        if b in printable:
            spelling[b] = chr(b)
        else:
            spelling[b] = chr(256 + shifted)
            shifted += 1
    return tuple(spelling[b] for b in range(256))


@functools.cache
def _byte_of() -> dict[str, int]:
    return {c: b for b, c in enumerate(byte_alphabet())}


def spell(data: bytes) -> str:
    """Token bytes in the byte-level alphabet."""
    alphabet = byte_alphabet()
    return "".join(alphabet[b] for b in data)


def unspell(token: str) -> bytes:
    """A token spelled in the byte-level alphabet back to its bytes."""
    byte_of = _byte_of()
    try:
        return bytes(byte_of[c] for c in token)
    except KeyError as exc:
        raise ValueError(
            f"token {token!r} is not spelled in the byte-level alphabet ({exc.args[0]!r}): "
            "only byte-level BPE vocabularies are supported"
        ) from None


# -- vocabularies -----------------------------------------------------------------------------


@dataclass
class BPEVocab:
    """A byte-level BPE vocabulary as tiktoken wants it."""

    ranks: dict[bytes, int]  # ordinary tokens; a token's id is its rank
    special_tokens: dict[str, int]  # control and added tokens, matched whole, never merged
    pre: PreTokenizer
    normalizer: str | None = None  # "NFC" or None
    # added tokens that are text, not control (HF "special": false, GGUF USER_DEFINED, such as
    # Qwen's "<tool_call>"): special to tiktoken, but decoded like any other token
    plain_tokens: frozenset[str] = frozenset()


def bpe_ranks(vocab: dict[str, int], merges: list[tuple[str, str]]) -> dict[bytes, int]:
    """tiktoken ranks from a spelled vocabulary and its merges, checking that ids are ranks.

    tiktoken merges the adjacent pair whose concatenation has the lowest id, so the model's merge
    priority must be its id order. Single bytes are never the result of a merge: any id will do.
    A longer token that no merge makes would be reachable by tiktoken and not by the model.
    """
    ranks = {unspell(token): i for token, i in vocab.items()}
    if len(ranks) != len(vocab):
        raise ValueError("two vocabulary entries spell the same bytes")
    made, last = set(), (-1, b"")
    for n, (left, right) in enumerate(merges):
        token = unspell(left) + unspell(right)
        for part in (left, right, left + right):
            if part not in vocab:
                raise ValueError(
                    f"merge {n} ({left!r} {right!r}): {part!r} is not in the vocabulary"
                )
        rank = ranks[token]
        if rank < last[0] or (rank == last[0] and token != last[1]):
            raise ValueError(
                f"token ids are not in merge order: merge {n} ({left!r} {right!r}) makes id "
                f"{rank} after a merge made id {last[0]}; tiktoken needs the id of a merged token "
                "to be its merge priority"
            )
        made.add(token)
        last = (rank, token)
    orphans = [t for t in ranks if len(t) > 1 and t not in made]
    if orphans:
        raise ValueError(
            f"{len(orphans)} multi-byte tokens are made by no merge (first: "
            f"{spell(orphans[0])!r}): tiktoken would build them where the model does not"
        )
    return ranks


def merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Every split of each token into two tokens, in the token's rank order (TikTokenConverter's
    derivation): with `ignore_merges`, BPE over these merges encodes as tiktoken does."""
    merges = []
    for token in sorted(ranks, key=ranks.__getitem__):
        splits = [(token[:i], token[i:]) for i in range(1, len(token))]
        splits = [(a, b) for a, b in splits if a in ranks and b in ranks]
        merges += sorted(splits, key=lambda ab: (ranks[ab[0]], ranks[ab[1]]))
    return merges


def _merge_pair(merge) -> tuple[str, str]:
    """A merge as tokenizer.json (either "a b" or ["a", "b"]) or GGUF ("a b") writes it."""
    if isinstance(merge, str):
        left, sep, right = merge.partition(" ")
        if sep and right:
            return left, right
    elif isinstance(merge, (list, tuple)) and len(merge) == 2:
        return merge[0], merge[1]
    raise ValueError(f"malformed merge {merge!r}")


def read_tokenizer_json(data: dict) -> BPEVocab:
    """A Hugging Face tokenizer.json (parsed) as tiktoken ranks; added tokens become special."""
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise ValueError(
            f"unsupported tokenizer model {model.get('type')!r}: only BPE is supported"
        )
    for key in ("byte_fallback", "dropout", "continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise ValueError(f"unsupported BPE option {key}={model[key]!r}")
    normalizer = data.get("normalizer")
    if normalizer is not None and normalizer != {"type": "NFC"}:
        raise ValueError(f"unsupported normalizer {json.dumps(normalizer)}: only NFC is supported")
    pre = pre_tokenizer_from_hf(data.get("pre_tokenizer"))
    added = data.get("added_tokens", [])
    special = {t["content"]: t["id"] for t in added}
    plain = frozenset(t["content"] for t in added if not t.get("special", True))
    vocab = dict(model["vocab"])
    for token, i in special.items():
        if vocab.get(token, i) != i:
            raise ValueError(
                f"added token {token!r} has id {i} but the vocabulary says {vocab[token]}"
            )
        vocab.pop(token, None)
    clash = set(vocab.values()) & set(special.values())
    if clash:
        raise ValueError(f"ids {sorted(clash)[:5]} are both added tokens and vocabulary tokens")
    ranks = bpe_ranks(vocab, [_merge_pair(m) for m in model.get("merges", [])])
    return BPEVocab(ranks, special, pre, "NFC" if normalizer else None, plain)


def read_gguf_vocab(fields: dict) -> BPEVocab:
    """GGUF `tokenizer.ggml.*` fields as tiktoken ranks: CONTROL and USER_DEFINED tokens become
    special, UNUSED ones are left out (their ids decode to nothing)."""
    model = fields.get("tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(f"unsupported tokenizer.ggml.model {model!r}: only byte-level BPE (gpt2)")
    pre = pre_tokenizer_from_gguf(fields.get("tokenizer.ggml.pre", "gpt-2"))
    tokens = list(fields["tokenizer.ggml.tokens"])
    types = list(fields.get("tokenizer.ggml.token_type") or [NORMAL] * len(tokens))
    if len(types) != len(tokens):
        raise ValueError(f"{len(tokens)} tokens but {len(types)} token types")
    vocab, special, plain = {}, {}, set()
    for i, (token, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind in (CONTROL, USER_DEFINED):
            special[token] = i
            if kind == USER_DEFINED:
                plain.add(token)
        elif kind in (NORMAL, BYTE):
            vocab[token] = i
        elif kind != UNUSED:
            raise ValueError(f"token {i} ({token!r}) has unsupported type {kind}")
    merges = [_merge_pair(m) for m in fields.get("tokenizer.ggml.merges", [])]
    return BPEVocab(bpe_ranks(vocab, merges), special, pre, pre.normalizer, frozenset(plain))


def tokenizer_json(vocab: BPEVocab) -> dict:
    """The tokenizer.json that `tokenizers` (and transformers) load to encode as tiktoken does."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": token,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": token not in vocab.plain_tokens,
            }
            for token, i in sorted(vocab.special_tokens.items(), key=lambda item: item[1])
        ],
        "normalizer": {"type": vocab.normalizer} if vocab.normalizer else None,
        "pre_tokenizer": vocab.pre.hf,
        "post_processor": None,
        "decoder": _byte_level(True),
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": True,
            # added tokens are in the vocabulary too, or `tokenizers` gives them new ids
            "vocab": dict(
                sorted(
                    [
                        *((spell(t), i) for t, i in vocab.ranks.items()),
                        *vocab.special_tokens.items(),
                    ],
                    key=lambda item: item[1],
                )
            ),
            "merges": [[spell(a), spell(b)] for a, b in merges_from_ranks(vocab.ranks)],
        },
    }


def gguf_vocab_fields(vocab: BPEVocab, n_vocab: int) -> dict:
    """The GGUF `tokenizer.ggml.{model,pre,tokens,token_type,merges}` fields for `n_vocab` ids;
    ids no token uses are written as UNUSED "[PAD<id>]", as llama.cpp's converter does."""
    tokens, types = [f"[PAD{i}]" for i in range(n_vocab)], [UNUSED] * n_vocab
    for token, i in vocab.ranks.items():
        tokens[i], types[i] = spell(token), NORMAL
    for token, i in vocab.special_tokens.items():
        tokens[i], types[i] = token, USER_DEFINED if token in vocab.plain_tokens else CONTROL
    return {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": vocab.pre.gguf_names[0],
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": [
            f"{spell(a)} {spell(b)}" for a, b in merges_from_ranks(vocab.ranks)
        ],
    }
