"""Markdown from people and models: formatted, highlighted, and never a way to run code."""
from html.parser import HTMLParser
from pathlib import Path

import pytest

from labeling.markdown import pygments_css, render_markdown

HOSTILE = [
    "<script>alert(1)</script>",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](data:text/html;base64,PHNjcmlwdD4=)",
    '<img src=x onerror="alert(1)">',
    '<a href="javascript:alert(1)" onclick="alert(1)">raw</a>',
    "![img](https://example.com/pixel.png)",
    '<iframe src="https://example.com"></iframe>',
    "<style>body{display:none}</style>",
]


class Elements(HTMLParser):
    """The elements of an HTML fragment as (tag, {attribute: value})."""

    def __init__(self, html):
        super().__init__()
        self.found = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))


@pytest.mark.parametrize("payload", HOSTILE)
def test_no_script_event_attribute_javascript_link_or_image_survives(payload):
    html = render_markdown(f"Hello {payload} world")
    for tag, attrs in Elements(html).found:
        assert tag not in ("script", "img", "iframe", "style"), html
        assert not any(name.startswith("on") for name in attrs), html
        assert attrs.get("href", "https:").startswith(("https:", "http:", "mailto:")), html
    assert "Hello" in html and "world" in html  # the text around it is kept


def test_markdown_is_formatted_and_code_highlighted():
    html = render_markdown(
        "**bold** and `x < y`\nnext line\n\n```python\ndef f():\n    return 1\n```\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n[docs](https://docs.python.org)"
    )
    assert "<strong>bold</strong>" in html and "<code>x &lt; y</code>" in html
    assert "<br>" in html  # a single newline is a line break, as in a chat
    assert '<span class="k">def</span>' in html  # highlighted by its language tag
    assert "<table>" in html and "<td>1</td>" in html
    assert '<a href="https://docs.python.org" rel="noopener noreferrer nofollow">' in html


def test_the_shipped_highlight_stylesheet_is_current():
    shipped = Path(__file__).resolve().parents[2] / "labeling/static/labeling/pygments.css"
    assert pygments_css() in shipped.read_text()
