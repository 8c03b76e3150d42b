"""Cost of the text work a labeler's request pays for: rendering Markdown safely (markdown-it-py,
Pygments, nh3) and the edit distance a dialogue saved from a suggestion records.

    python bench/bench_text_quality.py

Prints milliseconds per call (median of several) for a typical reply (~1.5 KB with a code
block), a long one at the 20,000-character limit, and the edit distance of a small local edit,
of the largest exact case (500 x 500 changed characters) and of a text changed all over
(the line-diff bound). No Django, no database. The figures depend on the machine's load: note
`uptime` beside them.
"""
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from labeling.edits import edit_distance  # noqa: E402
from labeling.markdown import _render, render_markdown  # noqa: E402

REPLY = (
    "Use **`itertools.groupby`**: it groups *consecutive* items by a key.\n\n"
    "```python\nfrom itertools import groupby\n\nfor key, group in groupby(sorted(words, key=len),"
    " key=len):\n    print(key, list(group))\n```\n\n"
    "| call | result |\n|---|---|\n| `groupby('aab')` | `a`, `b` |\n\n"
    "Sort first, or equal keys that are apart form separate groups. See "
    "[the docs](https://docs.python.org/3/library/itertools.html).\n"
) * 3


def ms(fn, repeat=7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main():
    long_reply = (REPLY * 20)[:20_000]
    first = _render.__wrapped__  # the work itself, past the cache
    typical = ms(lambda: first(REPLY))
    print(f"markdown, typical reply ({len(REPLY)} chars):   {typical:8.2f} ms")
    print(f"markdown, reply at the limit ({len(long_reply)} chars): "
          f"{ms(lambda: first(long_reply)):8.2f} ms")
    render_markdown(REPLY)
    cached = ms(lambda: render_markdown(REPLY))
    print(f"markdown, typical reply again (cached):     {cached:8.3f} ms")
    rng = random.Random(0)
    text = "def f(x):\n    return x\n" * 800
    local = text[:5000] + "y" + text[5001:]
    one_edit = ms(lambda: edit_distance(text, local))
    print(f"edit distance, one local edit in 19 KB:     {one_edit:8.2f} ms")
    a = "".join(rng.choice("abc") for _ in range(500))
    b = "".join(rng.choice("abc") for _ in range(500))
    exact = ms(lambda: edit_distance(a, b), 3)
    print(f"edit distance, 500 x 500 changed (exact):    {exact:8.2f} ms")
    everywhere = text.replace("x", "y")
    print(f"edit distance, changed all over (bound):     "
          f"{ms(lambda: edit_distance(text, everywhere)):8.2f} ms")


if __name__ == "__main__":
    main()
