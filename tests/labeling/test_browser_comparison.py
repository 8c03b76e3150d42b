"""End to end in headless Chromium: a labeler takes a comparison from the queue and votes with
the keyboard alone (B, then Ctrl+Enter); the vote is stored and the models are named only then.

Run: `pytest -m browser tests/labeling/test_browser_comparison.py`.
"""
import pytest
from comparison_factories import make_comparison
from labeling_factories import make_project, make_user
from playwright.sync_api import expect

from labeling.models import Vote

pytestmark = [pytest.mark.browser, pytest.mark.urls("labeling_urls")]


def test_a_vote_by_keyboard_alone(page, transactional_db):
    project = make_project(name="Eval", slug="eval-b")
    make_comparison(project, prompts=1)
    user = make_user("vera-b", password="pw-vera-b-123")
    page.goto("/accounts/login/?next=/label/")
    page.fill("input[name=username]", "vera-b")
    page.fill("input[name=password]", "pw-vera-b-123")
    with page.expect_navigation():
        page.click("button[type=submit]")
    with page.expect_navigation():
        page.click("text=Compare replies")
    expect(page.locator("h1")).to_have_text("Which reply is better?")
    assert "sft-alpha" not in page.content() and "policy-beta" not in page.content()
    page.keyboard.press("b")
    expect(page.locator('input[name="outcome"][value="b"]')).to_be_checked()
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    vote = Vote.objects.get(labeler=user)
    assert vote.outcome == "b" and vote.time_spent_ms > 0
    expect(page.locator(".messages")).to_contain_text("Reply A was written by")
