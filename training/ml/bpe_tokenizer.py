"""Byte-level BPE text to ids and back, the way the model's own tokenizer does it, on tiktoken.

A model is trained on the ids its own tokenizer produced, so ours must produce the same ones:
- user text can never produce a control token: `encode` is tiktoken's `encode_ordinary`, which
  encodes the string "<|end|>" as the plain characters it is made of;
- text is normalized first when the model's tokenizer normalizes (NFC, as Qwen2's does);
- bytes the vocabulary has no token for are dropped, as the model's tokenizer drops them, where
  tiktoken would panic (vocabularies trained on real text may lack a few control characters);
- a rendered dialogue is tokenized as transformers tokenizes the whole rendered string
  (`apply_chat_template`): the ordinary text between two control tokens is encoded as one
  string, and the assistant mask is found by byte offsets, since BPE may merge a template's "\\n"
  with a reply's leading whitespace.

`BPETokenizer` is the part of `training.ml.tokenizer.ChatTokenizer` that knows nothing of roles
or chat formats; the dialogue's layout comes from training/ml/chat_format.py.
"""

import unicodedata
from collections.abc import Iterable

import regex
import tiktoken

from training.ml.chat_format import Piece
from training.ml.tokenizer_files import BPEVocab, pre_tokenizer_for_pattern


class BPETokenizer:
    """A tiktoken `Encoding` with the model tokenizer's normalizer and added tokens.

    `normalizer` ("NFC" or None) is applied to text before encoding. `plain_tokens` are special
    tokens that `decode` keeps as text (added tokens that are not control tokens).
    """

    def __init__(
        self,
        encoding: tiktoken.Encoding,
        *,
        normalizer: str | None = None,
        plain_tokens: Iterable[str] = (),
    ):
        if normalizer not in (None, "NFC"):
            raise ValueError(f"unsupported normalizer {normalizer!r}: only NFC is supported")
        self.encoding, self.normalizer = encoding, normalizer
        self.plain_tokens = frozenset(plain_tokens)
        ranks, specials = encoding._mergeable_ranks, encoding._special_tokens
        ids = set(ranks.values()) | set(specials.values())
        control = {i for t, i in specials.items() if t not in self.plain_tokens}
        self._not_text = frozenset(control | (set(range(encoding.n_vocab)) - ids))  # no text
        # Vocabularies trained on real text may lack a few bytes (control characters); tiktoken
        # would panic on them, the model's tokenizer drops them: so do we (`_encode_ordinary`).
        present = bytes(sorted({t[0] for t in ranks if len(t) == 1}))
        self._absent = bytes(sorted(set(range(256)) - set(present)))
        self._present = present

    @property
    def name(self) -> str:
        return self.encoding.name

    @property
    def vocab_size(self) -> int:
        """Number of ids the model must embed (largest id + 1, special tokens included)."""
        return self.encoding.n_vocab

    def bpe_vocab(self) -> BPEVocab:
        """The encoding as a byte-level BPE vocabulary, for export."""
        return BPEVocab(
            ranks=self.encoding._mergeable_ranks,
            special_tokens=self.encoding._special_tokens,
            pre=pre_tokenizer_for_pattern(self.encoding._pat_str),
            normalizer=self.normalizer,
            plain_tokens=self.plain_tokens,
        )

    def _id(self, token: str) -> int:
        return self.encoding._special_tokens[token]

    # -- text -------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Ordinary text to ids. Special-token strings in `text` stay plain text."""
        return self._encode_ordinary(self._normalize(text))

    def decode(self, ids: Iterable[int]) -> str:
        """Ids to text, special tokens left out (a reply decodes without its end token)."""
        return self.encoding.decode([i for i in ids if i not in self._not_text])

    def token_bytes(self, token: int) -> bytes:
        """The bytes of one id, b"" for the special tokens `decode` leaves out: what a reply
        streamed token by token decodes (`text_stream.TextStream`)."""
        if token in self._not_text:
            return b""
        return self.encoding.decode_single_token_bytes(token)

    def _normalize(self, text: str) -> str:
        return unicodedata.normalize(self.normalizer, text) if self.normalizer else text

    def _encode_ordinary(self, text: str) -> list[int]:
        if self._absent and text.encode("utf-8", "replace").translate(None, self._present):
            # the model's tokenizer splits first and drops the bytes it has no token for
            ids = []
            for piece in regex.findall(self.encoding._pat_str, text):
                data = piece.encode("utf-8", "replace").translate(None, self._absent)
                ids += self.encoding._encode_single_piece(data) if data else []
            return ids
        return self.encoding.encode_ordinary(text)

    # -- rendered pieces --------------------------------------------------------------------

    def _encode_pieces(self, pieces: list[Piece]) -> tuple[list[int], list[int]]:
        """Ids and mask of rendered pieces: each control token by itself, the ordinary text
        between two control tokens as one string (so the ids are those of the whole rendered
        string), and the mask 1 on every token that overlaps a learned piece."""
        ids, mask, run = [], [], []
        for piece in [*pieces, None]:
            if piece is not None and not piece.special:
                run.append(piece)
                continue
            if run:
                run_ids, run_mask = self._encode_run(run)
                ids += run_ids
                mask += run_mask
                run = []
            if piece is not None:
                ids.append(self._id(piece.text))
                mask.append(int(piece.learn))
        return ids, mask

    def _encode_run(self, run: list[Piece]) -> tuple[list[int], list[int]]:
        # Each piece is normalized by itself: pieces meet after a template's newline, which no
        # normalization composes with what follows.
        texts = [self._normalize(p.text) for p in run]
        ids = self._encode_ordinary("".join(texts))
        learned, start = [], 0  # byte spans of learned pieces, in the bytes that get encoded
        for piece, text in zip(run, texts, strict=True):
            end = start + len(text.encode("utf-8", "replace").translate(None, self._absent))
            if piece.learn:
                learned.append((start, end))
            start = end
        if not learned:
            return ids, [0] * len(ids)
        mask, start = [], 0
        for token in self.encoding.decode_tokens_bytes(ids):
            end = start + len(token)
            mask.append(int(any(a < end and start < b for a, b in learned)))
            start = end
        return ids, mask
