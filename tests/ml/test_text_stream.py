"""A reply streamed token by token: whole characters only, and the same text as decoding it."""

import random

from tokenizer_refs import random_strings

from training.ml.text_stream import TextStream

MIXED = "Hi 😀 — 日本語 ok ✓"


def streamed(tokenizer, ids) -> list[str]:
    stream = TextStream(tokenizer)
    return [stream.add(i) for i in ids] + [stream.end()]


def test_characters_split_across_tokens_come_out_whole_once_complete(tiny_tokenizer):
    ids = tiny_tokenizer.encode(MIXED)
    pieces = streamed(tiny_tokenizer, ids)
    split = [i for i in ids if len(tiny_tokenizer.token_bytes(i)) == 1
             and tiny_tokenizer.token_bytes(i)[0] >= 0x80]  # fmt: skip
    assert len(split) >= 10  # the emoji, the dash and the CJK span several tokens each
    assert "".join(pieces) == MIXED and not any("\ufffd" in p for p in pieces)
    emoji_end = next(n for n in range(len(ids)) if "😀" in "".join(pieces[: n + 1]))
    assert pieces[emoji_end].endswith("😀") and pieces[emoji_end - 1] == ""  # at its last byte


def test_special_tokens_add_no_text(tiny_tokenizer):
    ids = [*tiny_tokenizer.encode("done."), tiny_tokenizer.end_id]
    pieces = streamed(tiny_tokenizer, ids)
    assert pieces[-2:] == ["", ""] and "".join(pieces) == "done."


def test_invalid_bytes_and_a_cut_character_read_as_decode_reads_them(tiny_tokenizer):
    byte = {tiny_tokenizer.token_bytes(i): i for i in range(256)}
    ids = [*tiny_tokenizer.encode("a"), byte[b"\x80"], *tiny_tokenizer.encode("b"),
           byte[b"\xf0"], byte[b"\x9f"]]  # a stray continuation byte; an emoji cut short
    pieces = streamed(tiny_tokenizer, ids)
    assert "".join(pieces) == tiny_tokenizer.decode(ids) == "a\ufffdb\ufffd"
    assert pieces[-1] == "\ufffd"  # the cut character shows only once the reply has ended


def test_random_text_streams_to_its_decoded_text(tiny_tokenizer):
    rng = random.Random(0)
    for text in random_strings(300):
        ids = tiny_tokenizer.encode(text)
        ids = ids[: rng.randint(0, len(ids))]  # replies end anywhere, mid-character too
        stream = TextStream(tiny_tokenizer)
        pieces = [stream.add(i) for i in ids]  # a prefix of valid text: no U+FFFD on the way
        assert not any("\ufffd" in p for p in pieces), text
        pieces.append(stream.end())
        assert "".join(pieces) == stream.text == tiny_tokenizer.decode(ids), text
