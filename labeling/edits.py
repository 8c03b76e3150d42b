"""How much a labeler changed a model suggestion: a character edit distance.

A dialogue started from a model suggestion records the distance from the suggestion's turns to
the saved turns; 0 marks a dialogue saved unedited (the model's words, not a person's). Edits
are usually local, so the common prefix and suffix are cut off first and the exact Levenshtein
distance is computed on what is left; when that rest is too large for a request (both sides
over 500 characters of changes) it is an upper bound from a line diff instead: still 0
exactly when nothing changed, which is what the SFT filter reads.
"""
import difflib

EXACT_LIMIT = 250_000  # cells of the dynamic programme (bench/bench_text_quality.py)
TURN_SEPARATOR = "\n\u241e\n"  # a record separator no labeler types: turns never merge


def turns_text(turns: list[dict]) -> str:
    return TURN_SEPARATOR.join(t["content"] for t in turns)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute one character), exact for local edits."""
    start = _common_prefix(a, b)
    end = _common_prefix(a[start:][::-1], b[start:][::-1])
    a, b = a[start:len(a) - end], b[start:len(b) - end]
    if not a or not b:
        return max(len(a), len(b))
    if len(a) * len(b) > EXACT_LIMIT:
        return _upper_bound(a, b)
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(
                previous[j] + 1,                          # delete char_a
                current[j - 1] + 1,                       # insert char_b
                previous[j - 1] + (char_a != char_b),     # substitute (or keep)
            ))
        previous = current
    return previous[-1]


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, by bisection on slice equality (compared in C)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _upper_bound(a: str, b: str) -> int:
    """Line by line (fast: lines hash): each changed block costs at most its longer side."""
    lines_a, lines_b = a.splitlines(keepends=True), b.splitlines(keepends=True)
    opcodes = difflib.SequenceMatcher(None, lines_a, lines_b, autojunk=False).get_opcodes()
    return sum(
        max(sum(map(len, lines_a[i1:i2])), sum(map(len, lines_b[j1:j2])))
        for tag, i1, i2, j1, j2 in opcodes if tag != "equal"
    )
