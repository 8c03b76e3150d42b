"""Numbers and moments from what people and clients send: one parser each, shared by the
services, views, importers and the training side, so none of them meets a 500.

Why not `str.isdigit()` then `int()`: isdigit() is true for "²" and "٣" (int() refuses the first
and reads the second as 3), and int() of a 5,000-digit string raises (CPython limits it), while
the database would refuse anything past its column anyway. Why not `parse_datetime()` alone: it
accepts year 1 and year 9999 with any offset, which overflow when moved to UTC.
"""
import json
import re
from datetime import UTC, datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from labeling.errors import Invalid

DB_INT_MAX = 2**31 - 1  # PostgreSQL integer: IntegerField, PositiveIntegerField, ...
DB_BIGINT_MAX = 2**63 - 1  # bigint: primary keys (BigAutoField) and BigIntegerField
MAX_JSON_DEPTH = 32  # our deepest shape (a ranking's groups, a dialogue's turns) is 3
_WHOLE = re.compile(r"[+-]?[0-9]{1,19}")
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)


def whole_number(value, *, minimum: int = 0, maximum: int = DB_BIGINT_MAX) -> int | None:
    """`value` as an int if it is one (or ASCII digits, optionally signed) within
    [minimum, maximum]; None otherwise, for the caller to say what it expected."""
    if isinstance(value, str):
        text = value.strip()
        if not _WHOLE.fullmatch(text):
            return None
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if minimum <= value <= maximum else None


def row_id(value) -> int | None:
    """A primary key someone sent (a URL part, a form field, a JSON id), or None."""
    return whole_number(value, minimum=1)


def as_of_moment(raw: str, *, field: str = "as_of", naive_is_utc: bool = False) -> datetime:
    """An ISO datetime with a time zone (or, with `naive_is_utc`, one without: UTC), in UTC and
    not later than now: a dataset named by a later moment would change as labels arrive."""
    try:
        moment = parse_datetime(raw) if isinstance(raw, str) and len(raw) <= 64 else None
    except ValueError:  # well formed but no such day or hour, e.g. 2025-02-30
        moment = None
    if moment is not None and moment.tzinfo is None and naive_is_utc:
        moment = moment.replace(tzinfo=UTC)
    if moment is None or moment.tzinfo is None:
        raise Invalid(f"{field} is an ISO datetime with a time zone, e.g. 2025-01-01T12:00Z.")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 pushed past the calendar by its offset
        moment = (datetime.min if moment.year < 2000 else datetime.max).replace(tzinfo=UTC)
    return moment_in_range(moment, field=field)


def moment_in_range(moment: datetime, *, field: str = "as_of") -> datetime:
    """Refuse a moment later than now, or before any label could exist (snapshot ids print
    the year with four digits)."""
    if moment > timezone.now():
        raise Invalid(f"{field} is later than now; a snapshot names labels that already exist.")
    if moment < EARLIEST:
        raise Invalid(f"{field} is before {EARLIEST.year}; no labels are that old.")
    return moment


def json_value(text: str | bytes, *, what: str = "The JSON"):
    """json.loads, with nesting deeper than MAX_JSON_DEPTH refused: a body nested 50,000 deep
    makes the parser (or any later walk over the value) raise RecursionError."""
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise Invalid(f"{what} is nested too deeply (at most {MAX_JSON_DEPTH} levels).") from None
    except json.JSONDecodeError as exc:
        # Some of json's messages end in "at" ("Unterminated string starting at").
        raise Invalid(f"Not JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}.") from None
    except ValueError as exc:  # bad UTF-8, NaN, an integer of 5,000 digits
        raise Invalid(f"Not JSON: {exc}.") from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise Invalid(f"{what} is nested too deeply (at most {MAX_JSON_DEPTH} levels).")
    return value


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")  # NaN, Infinity: jsonb refuses them


def _depth(value) -> int:
    """Nesting depth without recursion (the point is to survive deep values)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = item.values()
        elif not isinstance(item, list):
            continue
        deepest = max(deepest, level)
        if level <= MAX_JSON_DEPTH:
            stack.extend((child, level + 1) for child in item)
    return deepest
