"""A reply's text as its tokens arrive, each token's text once and only whole characters.

A byte-level BPE token can end inside a multi-byte UTF-8 character (an emoji is often four
one-byte tokens): the bytes of an unfinished character wait for the next tokens instead of
showing as U+FFFD. Decoding only the new token's bytes keeps a reply of n tokens O(n), where
decoding the whole reply again at every token was O(n^2). The text at the end is exactly
`tokenizer.decode(tokens)` (invalid bytes and a reply cut mid-character become U+FFFD there
too).
"""

import codecs

from training.ml.tokenizer import ChatTokenizer


class TextStream:
    def __init__(self, tokenizer: ChatTokenizer):
        self.tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pieces: list[str] = []

    def add(self, token: int) -> str:
        """The text `token` completes: "" while it ends inside a character."""
        return self._keep(self._utf8.decode(self.tokenizer.token_bytes(token)))

    def end(self) -> str:
        """What an unfinished last character leaves (U+FFFD), "" when the reply ended whole."""
        return self._keep(self._utf8.decode(b"", final=True))

    @property
    def text(self) -> str:
        return "".join(self._pieces)

    def _keep(self, piece: str) -> str:
        if piece:
            self._pieces.append(piece)
        return piece
