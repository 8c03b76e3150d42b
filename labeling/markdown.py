"""Markdown for text that people and models wrote (prompts, replies, guidelines), made safe.

Three steps, each with one job:
1. markdown-it-py (CommonMark, plus tables and strikethrough) with raw HTML off: a `<script>`
   typed in a reply is text, shown as written; single newlines are line breaks (replies are
   written like chat, not like documents).
2. Pygments highlights fenced code by its language tag (no guessing: a wrong guess is worse
   than none); the colours are classes, styled by `static/labeling/pygments.css`.
3. nh3 (the Rust ammonia sanitizer) keeps only the tags and attributes this renderer emits,
   and links only to http(s) and mailto: whatever a bug above lets through, no script, event
   attribute, `javascript:` link or image reaches the page.
"""
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from pygments import highlight as pygments_highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

TAGS = {
    "p", "br", "hr", "strong", "em", "del", "s", "code", "pre", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a",
    "span",
}
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}
# Spans only: markdown-it wraps them in its own <pre><code>.
FORMATTER = HtmlFormatter(nowrap=True)
STYLE_SCOPE = ".md pre"


def _highlight(code: str, lang: str, attrs: str) -> str:
    """The code as highlighted spans, or "" for markdown-it's own escaping when the language
    is unknown or missing."""
    lexer = _lexer(lang.strip().split()[0].lower()) if lang.strip() else None
    return pygments_highlight(code, lexer, FORMATTER) if lexer else ""


@lru_cache(maxsize=64)
def _lexer(name: str):
    """Looking a lexer up by name costs milliseconds (Pygments scans its registry): once each."""
    try:
        return get_lexer_by_name(name)
    except ClassNotFound:
        return None


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return (
        MarkdownIt("commonmark", {"html": False, "breaks": True, "highlight": _highlight})
        .enable("table")
        .enable("strikethrough")
    )


def _token_classes() -> set[str]:
    """Every short class name Pygments may put on a `<span>`."""
    from pygments.token import STANDARD_TYPES

    return {name for name in STANDARD_TYPES.values() if name}


CLASSES = {"span": _token_classes()}  # no other class survives (nor any style or id)


def render_markdown(text: str) -> str:
    """Safe HTML for `text` (a str that is safe to mark safe)."""
    return _render(text or "")


@lru_cache(maxsize=256)
def _render(text: str) -> str:
    """Cached: a ranking page shows the same replies to every labeler of a task and on every
    reload, and highlighting costs milliseconds per code block (bench/bench_text_quality.py)."""
    html = _parser().render(text)
    return nh3.clean(
        html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=URL_SCHEMES,
        allowed_classes=CLASSES, link_rel="noopener noreferrer nofollow",
        clean_content_tags={"script", "style"},
    )


def pygments_css() -> str:
    """The stylesheet of the highlight classes, saved as static/labeling/pygments.css (a test
    checks the saved file is current)."""
    rules = FORMATTER.get_style_defs(STYLE_SCOPE).splitlines()
    return "\n".join(rule for rule in rules if rule.startswith(STYLE_SCOPE))
