"""The chat tokenizer: a byte-level BPE plus the chat format of the model it belongs to.

Tokenizers we train render a dialogue as

    <|endoftext|> <|user|> text <|end|> <|assistant|> text <|end|> <|user|> ...

`<|endoftext|>` opens every rendered dialogue as it separates documents in pretraining, so the
model starts a chat from the same state it starts a document from. `<|end|>` closes every turn;
the model learns to emit it at the end of a reply and sampling stops there. Real models bring
their own vocabulary and chat template (ChatML, Llama-3, GPT-2 style: training/ml/chat_format.py).
How text becomes ids, as the model's own tokenizer makes them: training/ml/bpe_tokenizer.py.

Sources of encodings:
- `ChatTokenizer.from_tiktoken("gpt2")`: tiktoken's own named encodings, when their files are
  in the local tiktoken cache (nothing is downloaded at run time);
- `train_tokenizer(texts, vocab_size)`: byte-level BPE trained by `rustbpe` on our own corpus,
  the merges then handed to tiktoken for fast encoding, as nanochat does;
- `ChatTokenizer.from_hf_files(tokenizer_json, tokenizer_config)` and
  `ChatTokenizer.from_gguf_fields(fields)`: a real model's byte-level BPE
  (training/ml/tokenizer_files.py), written back by `training.ml.model_export`
  (`gguf_tokenizer_fields`, `save_hf_tokenizer`).
`save(path)` writes a JSON file (no pickle), `ChatTokenizer.load(path)` reads it back.
"""

import base64
import json
import os
from collections.abc import Iterable
from pathlib import Path

import tiktoken

from training.ml.bpe_tokenizer import BPETokenizer
from training.ml.chat_format import (
    ASSISTANT,
    END,
    ENDOFTEXT,
    USER,
    ChatFormat,
    OursFormat,
    chat_format_from_template,
    check_turns,
)
from training.ml.tokenizer_files import BPEVocab, read_gguf_vocab, read_tokenizer_json

PAD = "<|pad|>"
SPECIAL_TOKENS = (ENDOFTEXT, USER, ASSISTANT, END, PAD)
FILE_FORMAT = "rlhf-loop-tokenizer"
FILE_VERSION = 2


class ChatTokenizer(BPETokenizer):
    """A `BPETokenizer` and the chat format that lays dialogues out in its special tokens.

    `bos_token`, `eos_token` and `pad_token` name special tokens of the encoding; ours are
    `<|endoftext|>`, `<|endoftext|>` and `<|pad|>`.
    """

    def __init__(
        self,
        encoding: tiktoken.Encoding,
        chat_format: ChatFormat | None = None,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        normalizer: str | None = None,
        plain_tokens: Iterable[str] = (),
    ):
        chat_format = chat_format or OursFormat()
        if chat_format.kind == "ours":
            bos_token, eos_token = bos_token or ENDOFTEXT, eos_token or ENDOFTEXT
            pad_token, needed = pad_token or PAD, SPECIAL_TOKENS
        else:
            if eos_token is None:
                raise ValueError(f"encoding {encoding.name!r}: an eos token is required")
            needed = chat_format.control_tokens
        needed = dict.fromkeys([*needed, bos_token, eos_token, pad_token])
        missing = [t for t in needed if t is not None and t not in encoding._special_tokens]
        if missing:
            raise ValueError(f"encoding {encoding.name!r} lacks special tokens {missing}")
        super().__init__(encoding, normalizer=normalizer, plain_tokens=plain_tokens)
        self.chat_format = chat_format
        self.bos_token, self.eos_token, self.pad_token = bos_token, eos_token, pad_token

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def from_ranks(
        cls,
        name: str,
        pattern: str,
        mergeable_ranks: dict[bytes, int],
        special_tokens: dict[str, int] | None = None,
    ) -> "ChatTokenizer":
        """Build from BPE merges; our special tokens are appended after the last id in use."""
        special = dict(special_tokens or {})
        next_id = max([*mergeable_ranks.values(), *special.values()]) + 1
        for token in SPECIAL_TOKENS:
            if token not in special:
                special[token] = next_id
                next_id += 1
        encoding = tiktoken.Encoding(
            name=name, pat_str=pattern, mergeable_ranks=mergeable_ranks, special_tokens=special
        )
        return cls(encoding)

    @classmethod
    def from_tiktoken(cls, name: str) -> "ChatTokenizer":
        """tiktoken's named encoding `name` ("gpt2", "cl100k_base", ...) with the chat tokens
        added. Only works when tiktoken finds the encoding's files locally."""
        try:
            base = tiktoken.get_encoding(name)
        except Exception as exc:  # no network: requests' ConnectionError, or an unknown name
            raise RuntimeError(
                f"tiktoken encoding {name!r} is not available offline ({type(exc).__name__}): "
                f"run `python -c \"import tiktoken; tiktoken.get_encoding('{name}')\"` on a "
                "machine with internet access and copy its cache directory here (set "
                "TIKTOKEN_CACHE_DIR), or train one with `python -m training.ml.pretrain`"
            ) from None
        return cls.from_ranks(name, base._pat_str, base._mergeable_ranks, base._special_tokens)

    @classmethod
    def from_hf_files(
        cls, tokenizer_json: dict, tokenizer_config: dict | None = None, *, name: str = "hf-bpe"
    ) -> "ChatTokenizer":
        """A Hugging Face tokenizer: tokenizer.json and tokenizer_config.json, both parsed.
        Without a chat template the format is GPT-2 style; without an eos token in the config,
        `<|endoftext|>` is the eos token if the vocabulary has it."""
        config = tokenizer_config or {}
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
            template = {t.get("name"): t.get("template") for t in template}.get("default")
        bos, eos, pad = (_added_token(config.get(key)) for key in _CONFIG_TOKENS)
        return cls._from_vocab(read_tokenizer_json(tokenizer_json), name, template, bos, eos, pad)

    @classmethod
    def from_gguf_fields(cls, fields: dict, *, name: str = "gguf-bpe") -> "ChatTokenizer":
        """A GGUF's tokenizer: `fields` holds its `tokenizer.ggml.*` and `tokenizer.chat_template`
        values as plain Python values under their GGUF key names."""
        tokens = fields["tokenizer.ggml.tokens"]

        def token(key: str) -> str | None:
            i = fields.get(f"tokenizer.ggml.{key}_token_id")
            return None if i is None else tokens[i]

        template = fields.get("tokenizer.chat_template")
        bos, eos, pad = token("bos"), token("eos"), token("padding")
        return cls._from_vocab(read_gguf_vocab(fields), name, template, bos, eos, pad)

    @classmethod
    def _from_vocab(
        cls,
        vocab: BPEVocab,
        name: str,
        template: str | None,
        bos: str | None,
        eos: str | None,
        pad: str | None,
    ) -> "ChatTokenizer":
        if eos is None and ENDOFTEXT in vocab.special_tokens:
            eos = ENDOFTEXT
        encoding = tiktoken.Encoding(
            name=name,
            pat_str=vocab.pre.pattern,
            mergeable_ranks=vocab.ranks,
            special_tokens=vocab.special_tokens,
        )
        fmt = chat_format_from_template(template, bos_token=bos, eos_token=eos)
        return cls(
            encoding,
            fmt,
            bos_token=bos,
            eos_token=eos,
            pad_token=pad,
            normalizer=vocab.normalizer,
            plain_tokens=vocab.plain_tokens,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ChatTokenizer":
        """Read a tokenizer written by `save` (version 1 files are our chat format)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:  # missing, unreadable, not UTF-8, not JSON
            raise ValueError(f"cannot read tokenizer file {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise ValueError(f"{path} is not a {FILE_FORMAT} file")
        try:
            ranks = {base64.b64decode(token): rank for token, rank in data["mergeable_ranks"]}
            if data.get("version", 1) == 1:
                return cls.from_ranks(data["name"], data["pattern"], ranks, data["special_tokens"])
            encoding = tiktoken.Encoding(
                name=data["name"],
                pat_str=data["pattern"],
                mergeable_ranks=ranks,
                special_tokens=data["special_tokens"],
            )
            tokens = {key: data[key] for key in _CONFIG_TOKENS}
            fmt = chat_format_from_template(
                data["chat_template"], bos_token=tokens["bos_token"], eos_token=tokens["eos_token"]
            )
            if fmt.kind != data["chat_format"]:
                raise ValueError(f"chat template renders {fmt.kind}, not {data['chat_format']}")
            plain = data["plain_tokens"]
            return cls(encoding, fmt, normalizer=data["normalizer"], plain_tokens=plain, **tokens)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"tokenizer file {path} is damaged: {exc!r}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write the encoding and chat format as JSON (token bytes in base64), atomically."""
        ranks = sorted(self.encoding._mergeable_ranks.items(), key=lambda item: item[1])
        data = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "name": self.name,
            "pattern": self.encoding._pat_str,
            "special_tokens": self.encoding._special_tokens,
            "mergeable_ranks": [[base64.b64encode(t).decode("ascii"), r] for t, r in ranks],
            "chat_format": self.chat_format.kind,
            "chat_template": self.chat_format.template,
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "pad_token": self.pad_token,
            "normalizer": self.normalizer,
            "plain_tokens": sorted(self.plain_tokens),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    # -- ids --------------------------------------------------------------------------------

    @property
    def eot_id(self) -> int:
        """The document separator (and end of sequence): ours `<|endoftext|>`, else eos."""
        return self._id(self.eos_token)

    @property
    def bos_id(self) -> int | None:
        return None if self.bos_token is None else self._id(self.bos_token)

    @property
    def end_id(self) -> int:
        """The token that closes an assistant turn; sampling stops on it."""
        return self._id(self.chat_format.end_token)

    @property
    def pad_id(self) -> int:
        return self._id(self.pad_token or self.eos_token)

    @property
    def user_id(self) -> int:  # our chat format only
        return self._id(USER)

    @property
    def assistant_id(self) -> int:  # our chat format only
        return self._id(ASSISTANT)

    # -- dialogues --------------------------------------------------------------------------

    def render_reply(self, text: str) -> list[int]:
        """An assistant reply as the model should produce it: content then the end token.

        `render_prompt(turns) + render_reply(text)` starts the ids of `render_dialogue` on the
        same turns followed by that assistant turn whenever the reply's first characters don't
        merge with the end of the prompt: always in our format and GPT-2 style; in ChatML
        unless the reply starts with whitespace that BPE joins to the prompt's final "\n";
        in Llama-3 for replies without surrounding whitespace (its template strips them).
        """
        return [*self.encode(text), self.end_id]

    def render_dialogue(self, turns: list[dict]) -> tuple[list[int], list[int]]:
        """Render a dialogue to (ids, assistant_mask).

        The mask is 1 on every token of assistant content and on the end token that closes an
        assistant turn (so fine-tuning teaches the model to stop), 0 elsewhere, including the
        template's tokens that open the turn, which the prompt already supplies. A token in
        which BPE merged the opening's last characters with the content's first (ChatML's
        "\n" and a reply's leading newline) holds content, so it is 1.

        `turns` is a list of {"role", "content"} dicts alternating user, assistant, user, ...
        and starting with a user turn, after an optional "system" turn (our format merges it
        into the first user turn's text: the tiny models have no separate system channel).
        User turns must not be empty; an assistant turn may be (the model stopped at once).
        """
        return self._encode_pieces(self.chat_format.pieces(turns))

    def render_prompt(self, turns: list[dict]) -> list[int]:
        """The dialogue so far, which must end with a user turn, then the template's generation
        prompt (`<|assistant|>` in ours): the ids to generate the next reply from."""
        _, pairs = check_turns(turns)
        if pairs[-1][0] != "user":
            raise ValueError("a prompt must end with a user turn")
        ids, _ = self._encode_pieces(self.chat_format.pieces(turns, add_generation_prompt=True))
        return ids


_CONFIG_TOKENS = ("bos_token", "eos_token", "pad_token")


def _added_token(value) -> str | None:
    """A tokenizer_config.json token: a string, or an AddedToken dict with its "content"."""
    return value.get("content") if isinstance(value, dict) else value


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, *, name: str = "chat-bpe"
) -> ChatTokenizer:
    """Train byte-level BPE on `texts` with rustbpe (GPT-4 split pattern) and return it as a
    tiktoken-backed `ChatTokenizer` of at most `vocab_size` ids, special tokens included.
    The vocabulary comes out smaller when the corpus runs out of pairs to merge."""
    import rustbpe

    n_merged = vocab_size - len(SPECIAL_TOKENS)
    if n_merged < 256:
        raise ValueError(f"vocab_size must be at least {256 + len(SPECIAL_TOKENS)}")
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(iter(texts), n_merged)
    ranks = dict(trainer.get_mergeable_ranks())
    return ChatTokenizer.from_ranks(name, trainer.get_pattern(), ranks)
