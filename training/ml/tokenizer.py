"""The chat tokenizer: a tiktoken `Encoding` plus the special tokens of the dialogue format.

A dialogue renders as

    <|endoftext|> <|user|> text <|end|> <|assistant|> text <|end|> <|user|> ...

`<|endoftext|>` opens every rendered dialogue as it separates documents in pretraining, so the
model starts a chat from the same state it starts a document from. `<|end|>` closes every turn;
the model learns to emit it at the end of a reply and sampling stops there.

User text can never produce a control token: `encode` is tiktoken's `encode_ordinary`, which
encodes the string "<|end|>" as the plain characters it is made of.

Two sources of encodings, as nanochat does it:
- `ChatTokenizer.from_tiktoken("gpt2")`: tiktoken's own named encodings, when their files are
  in the local tiktoken cache (nothing is downloaded at run time);
- `train_tokenizer(texts, vocab_size)`: byte-level BPE trained by `rustbpe` on our own corpus,
  the merges then handed to tiktoken for fast encoding.
`save(path)` writes a JSON file (no pickle), `ChatTokenizer.load(path)` reads it back.
"""

import base64
import json
import os
from collections.abc import Iterable
from pathlib import Path

import tiktoken

ENDOFTEXT = "<|endoftext|>"
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END = "<|end|>"
PAD = "<|pad|>"
SPECIAL_TOKENS = (ENDOFTEXT, USER, ASSISTANT, END, PAD)
ROLES = ("user", "assistant")
FILE_FORMAT = "rlhf-loop-tokenizer"


class ChatTokenizer:
    """A tiktoken `Encoding` whose special tokens include `SPECIAL_TOKENS`."""

    def __init__(self, encoding: tiktoken.Encoding):
        missing = [t for t in SPECIAL_TOKENS if t not in encoding._special_tokens]
        if missing:
            raise ValueError(f"encoding {encoding.name!r} lacks special tokens {missing}")
        self.encoding = encoding
        self._special_ids = frozenset(encoding._special_tokens.values())

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
    def load(cls, path: str | os.PathLike) -> "ChatTokenizer":
        """Read a tokenizer written by `save`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:  # missing, unreadable, not UTF-8, not JSON
            raise ValueError(f"cannot read tokenizer file {path}: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise ValueError(f"{path} is not a {FILE_FORMAT} file")
        try:
            ranks = {base64.b64decode(token): rank for token, rank in data["mergeable_ranks"]}
            return cls.from_ranks(data["name"], data["pattern"], ranks, data["special_tokens"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"tokenizer file {path} is damaged: {exc!r}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write the encoding as JSON (token bytes in base64), atomically."""
        ranks = sorted(self.encoding._mergeable_ranks.items(), key=lambda item: item[1])
        data = {
            "format": FILE_FORMAT,
            "version": 1,
            "name": self.name,
            "pattern": self.encoding._pat_str,
            "special_tokens": self.encoding._special_tokens,
            "mergeable_ranks": [[base64.b64encode(t).decode("ascii"), r] for t, r in ranks],
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)

    # -- ids --------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.encoding.name

    @property
    def vocab_size(self) -> int:
        """Number of ids the model must embed (largest id + 1, special tokens included)."""
        return self.encoding.n_vocab

    @property
    def eot_id(self) -> int:
        return self.encoding._special_tokens[ENDOFTEXT]

    @property
    def user_id(self) -> int:
        return self.encoding._special_tokens[USER]

    @property
    def assistant_id(self) -> int:
        return self.encoding._special_tokens[ASSISTANT]

    @property
    def end_id(self) -> int:
        return self.encoding._special_tokens[END]

    @property
    def pad_id(self) -> int:
        return self.encoding._special_tokens[PAD]

    # -- text -------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Ordinary text to ids. Special-token strings in `text` stay plain text."""
        return self.encoding.encode_ordinary(text)

    def decode(self, ids: Iterable[int]) -> str:
        """Ids to text, special tokens left out (a reply decodes without its `<|end|>`)."""
        return self.encoding.decode([i for i in ids if i not in self._special_ids])

    def render_reply(self, text: str) -> list[int]:
        """An assistant reply as the model should produce it: content then `<|end|>`.

        `render_prompt(turns) + render_reply(text)` equals the ids of `render_dialogue` on the
        same turns followed by that assistant turn.
        """
        return [*self.encode(text), self.end_id]

    def render_dialogue(self, turns: list[dict]) -> tuple[list[int], list[int]]:
        """Render a dialogue to (ids, assistant_mask).

        The mask is 1 on every assistant content token and on the `<|end|>` that closes an
        assistant turn (so fine-tuning teaches the model to stop), 0 elsewhere, including the
        `<|assistant|>` token itself, which the prompt already supplies.

        `turns` is a list of {"role", "content"} dicts alternating user, assistant, user, ...
        and starting with a user turn. A single leading "system" turn is accepted and merged
        into the first user turn's text (the tiny models have no separate system channel).
        User turns must not be empty; an assistant turn may be (the model stopped at once).
        """
        ids, mask = [self.eot_id], [0]
        for role, content in self._check_turns(turns):
            role_id = self.user_id if role == "user" else self.assistant_id
            body = [*self.encode(content), self.end_id]
            learn = 1 if role == "assistant" else 0
            ids += [role_id, *body]
            mask += [0] + [learn] * len(body)
        return ids, mask

    def render_prompt(self, turns: list[dict]) -> list[int]:
        """The dialogue so far, which must end with a user turn, then `<|assistant|>`: the ids
        to generate the next reply from."""
        checked = self._check_turns(turns)
        if checked[-1][0] != "user":
            raise ValueError("a prompt must end with a user turn")
        ids, _ = self.render_dialogue(turns)
        return [*ids, self.assistant_id]

    @staticmethod
    def _check_turns(turns: list[dict]) -> list[tuple[str, str]]:
        """Validate the turns; returns (role, content) pairs with a system turn merged."""
        if not turns:
            raise ValueError("empty prompt: a dialogue needs at least one user turn")
        pairs = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
                raise ValueError(f"turn {i} must be a dict with a string 'content'")
            pairs.append((turn.get("role"), turn["content"]))
        if pairs[0][0] == "system":
            if len(pairs) < 2 or pairs[1][0] != "user":
                raise ValueError("a system turn must be followed by a user turn")
            system, (_, first) = pairs[0][1], pairs[1]
            pairs = [("user", f"{system}\n\n{first}" if system.strip() else first), *pairs[2:]]
        for i, (role, content) in enumerate(pairs):
            expected = ROLES[i % 2]
            if role != expected:
                raise ValueError(
                    f"turn {i} has role {role!r}, expected {expected!r}: roles are 'user' and "
                    "'assistant', alternating, starting with 'user'"
                )
            if role == "user" and not content.strip():
                raise ValueError(f"empty prompt: user turn {i} has no text")
        return pairs


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
