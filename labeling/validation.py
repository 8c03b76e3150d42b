"""Checks on text that people and importers send, shared by every service that writes it."""
import hashlib
import re
import unicodedata

from labeling.errors import Invalid

MAX_TEXT_CHARS = 20_000  # one turn, one reply, one completion
MAX_TURNS = 40
MAX_COMMENT_CHARS = 2_000
MAX_REASON_CHARS = 500
MAX_TOKEN_CHARS = 64
ROLES = ("user", "assistant")
EMPTY_REPLY = "(empty reply)"  # a model that stopped at once: still a reply to rank (low)


def clean_text(value, *, field: str, max_chars: int = MAX_TEXT_CHARS, required=True) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{field} must be text.")
    value = value.replace("\r\n", "\n").replace("\x00", "")
    if required and not value.strip():
        raise Invalid(f"{field} is empty.")
    if len(value) > max_chars:
        raise Invalid(f"{field} is too long: {len(value)} characters, at most {max_chars}.")
    return value


def clean_turns(turns, *, ends_with: str) -> list[dict]:
    """A dialogue: alternating user/assistant turns starting with the user, ending as asked."""
    if not isinstance(turns, list) or not turns:
        raise Invalid("A dialogue must be a non-empty list of turns.")
    if len(turns) > MAX_TURNS:
        raise Invalid(f"A dialogue has at most {MAX_TURNS} turns.")
    cleaned = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or set(turn) - {"role", "content"}:
            raise Invalid(f"Turn {i + 1} must be an object with a role and a content.")
        expected = ROLES[i % 2]
        if turn.get("role") != expected:
            raise Invalid(f"Turn {i + 1} must be a {expected} turn (turns alternate, user first).")
        content = clean_text(turn.get("content"), field=f"Turn {i + 1}")
        cleaned.append({"role": expected, "content": content})
    if cleaned[-1]["role"] != ends_with:
        raise Invalid(f"The dialogue must end with a {ends_with} turn.")
    return cleaned


def render_turns(turns: list[dict]) -> str:
    """A prompt's display and search text: a single question as is, a dialogue with roles."""
    if len(turns) == 1:
        return turns[0]["content"]
    return "\n\n".join(f"{t['role'].capitalize()}: {t['content']}" for t in turns)


def content_hash(turns: list[dict]) -> str:
    """Equal for near-duplicates: case, punctuation, accents and whitespace are ignored."""
    text = unicodedata.normalize("NFKD", render_turns(turns)).casefold()
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = re.sub(r"[^\w]+", " ", text).strip()
    return hashlib.sha256(text.encode()).hexdigest()
