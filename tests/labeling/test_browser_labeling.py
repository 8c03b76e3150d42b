"""End to end in headless Chromium: a labeler logs in, writes a demonstration and a dialogue,
ranks by keyboard alone and by drag and drop, and the rows are in the database.

Run: `pytest -m browser tests/labeling`. Chromium is Debian's (`CHROMIUM_PATH`, default
/usr/bin/chromium); Playwright's own browser download is not used. Set `LABELING_SCREENSHOTS`
to a folder to keep a screenshot of every page the tests visit.
"""
import os
from pathlib import Path

import pytest
from labeling_factories import make_project, make_prompt, make_tasks, make_user
from playwright.sync_api import expect

from labeling.models import Assignment, Demonstration, Ranking
from labeling.services.queue import ranking_claim_next

pytestmark = [pytest.mark.browser, pytest.mark.urls("labeling_urls")]

@pytest.fixture
def project(transactional_db):
    return make_project(
        name="Python help", slug="python-help", k=4,
        guidelines="Prefer correct, short answers.\nFlag anything harmful.",
    )


@pytest.fixture
def lena(transactional_db):
    return make_user("lena-b", password=password("lena-b"))


def password(user):
    return f"pw-{user if isinstance(user, str) else user.get_username()}-123"


def shot(page, name):
    folder = os.environ.get("LABELING_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def log_in(page, user):
    page.goto("/accounts/login/?next=/label/")
    page.fill("input[name=username]", user.get_username())
    page.fill("input[name=password]", password(user))
    with page.expect_navigation():
        page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Your queue")


def groups(order):
    """A ranking's groups with each tie as a set (the order inside a tie means nothing)."""
    return [set(g) for g in order]


def card_ids(page):
    ids = page.eval_on_selector_all(".completion", "els => els.map(e => e.dataset.id)")
    return [int(i) for i in ids]


def test_labeler_logs_in_and_writes_a_demonstration_that_survives_a_reload(page, project, lena):
    make_prompt(project, "How do I reverse a list in <b>Python</b>?")
    page.goto("/accounts/login/")
    page.fill("input[name=username]", lena.get_username())
    page.fill("input[name=password]", password(lena))
    with page.expect_navigation():
        page.click("button[type=submit]")
    # The dashboard loads the queue with htmx.
    expect(page.locator("#queue")).to_contain_text("Python help")
    shot(page, "1-dashboard")
    page.click("text=Label")
    shot(page, "2-queue")
    with page.expect_navigation():
        page.click("button:has-text('Write a reply')")
    # Shown as written, tags and all (escaped, not interpreted).
    expect(page.locator(".turn.user .turn-content")).to_have_text(
        "How do I reverse a list in <b>Python</b>?"
    )
    reply = page.locator("textarea[name=reply]")
    expect(reply).to_be_focused()
    page.keyboard.type("Use reversed(xs) or xs[::-1].")
    page.keyboard.press("Enter")
    page.keyboard.type("Or xs.reverse() in place.")
    shot(page, "3-demonstration")
    page.reload()
    expect(reply).to_have_value("Use reversed(xs) or xs[::-1].\nOr xs.reverse() in place.")
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    expect(page.locator(".messages")).to_contain_text("Demonstration saved")

    demo = Demonstration.objects.get()
    assert demo.author == lena
    assert demo.turns[-1] == {
        "role": "assistant", "content": "Use reversed(xs) or xs[::-1].\nOr xs.reverse() in place."
    }
    assert demo.time_spent_ms > 0
    # The draft is gone once saved.
    assert page.evaluate("Object.keys(localStorage).filter(k => k.includes('draft:'))") == []


def test_labeler_writes_a_dialogue_playing_both_sides(page, project, lena):
    log_in(page, lena)
    with page.expect_navigation():
        page.click("text=Write a dialogue")
    turns = page.locator("textarea[name=turn]")
    turns.nth(0).fill("What is a generator?")
    turns.nth(1).fill("A function that yields values lazily.")
    page.click("[data-turn-add]")
    expect(turns).to_have_count(3)
    expect(turns.nth(2)).to_be_focused()
    page.keyboard.type("Show me one.")
    page.click("[data-turn-add]")
    page.keyboard.type("def count():\n    n = 0\n    while True:\n        yield n\n        n += 1")
    shot(page, "4-dialogue")
    with page.expect_navigation():
        page.click("button:has-text('Save the dialogue')")
    expect(page.locator(".messages")).to_contain_text("Dialogue saved")
    demo = Demonstration.objects.get()
    assert demo.is_dialogue
    assert [t["role"] for t in demo.turns] == ["user", "assistant", "user", "assistant"]
    assert demo.turns[3]["content"].startswith("def count():\n    n = 0")


def test_labeler_ranks_by_keyboard_alone_from_an_unranked_start(page, project, lena):
    make_tasks(project, 1)
    log_in(page, lena)
    # Keyboard only from here: Tab to the button, Enter.
    for _ in range(15):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent.trim()") == "Rank replies":
            break
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("#keys-help")).to_be_visible()
    # Every reply starts unplaced: submitting the page as shown is not a ranking.
    expect(page.locator("[data-tray-count]")).to_have_text("4 of 4")
    a, b, c, d = card_ids(page)
    page.keyboard.press("Control+Enter")
    expect(page.locator("[data-unplaced-error]")).to_have_text(
        "Place every reply first: 4 of 4 not placed yet.")
    assert not Ranking.objects.exists()
    assert page.evaluate("document.activeElement.dataset.id") == str(a)
    page.keyboard.press("Enter")  # A placed first; the focus goes on to B
    page.keyboard.press("1")  # B on top: B A
    page.keyboard.press("Enter")  # C next: B A C
    page.keyboard.press("2")  # D at rank 2: B D A C
    expect(page.locator("[data-tray-box]")).to_be_hidden()
    assert card_ids(page) == [b, d, a, c]
    page.keyboard.press("t")  # D tied with B
    page.keyboard.press("j")  # focus A
    page.keyboard.press("h")  # A is harmful
    page.keyboard.press("ArrowDown")  # B=D C A
    assert card_ids(page) == [b, d, c, a]
    expect(page.locator(f".completion[data-id='{d}'] .tie-note")).to_be_visible()
    expect(page.locator(f".completion[data-id='{a}'] [data-rank]")).to_have_text("3")
    shot(page, "5-ranking-keyboard")
    page.reload()  # the order, the tie and the flag are kept as a draft
    assert card_ids(page) == [b, d, c, a]
    expect(page.locator(f".completion[data-id='{d}'] .tie-note")).to_be_visible()
    expect(page.locator(f".completion[data-id='{a}'] input[value=harmful]")).to_be_checked()
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    expect(page.locator(".messages")).to_contain_text("Ranking saved")

    ranking = Ranking.objects.get()
    assert ranking.labeler == lena
    assert groups(ranking.order) == [{b, d}, {c}, {a}]
    assert ranking.flags == {str(a): ["harmful"]}
    assert ranking.time_spent_ms > 0


def test_labeler_ranks_by_drag_and_drop_and_a_double_click_stores_one(page, project, lena):
    make_tasks(project, 1)
    # Tall enough for every card: Playwright's drag does not scroll the page mid-drag.
    page.set_viewport_size({"width": 1200, "height": 2400})
    log_in(page, lena)
    with page.expect_navigation():
        page.click("button:has-text('Rank replies')")
    a, b, c, d = card_ids(page)

    def card(cid):
        return page.locator(f".completion[data-id='{cid}']")

    card(d).drag_to(page.locator("[data-ranking-empty]"))  # D placed: D
    box = card(d).bounding_box()
    card(a).drag_to(card(d), target_position={"x": 40, "y": box["height"] - 8})  # D A
    card(b).drag_to(card(d), target_position={"x": 40, "y": 8})  # B D A
    card(c).locator("[data-move=place]").click()  # B D A C
    assert card_ids(page) == [b, d, a, c]
    card(d).locator("[data-move=tie]").click()  # D tied with B
    card(b).locator("input[value=untrue]").check()
    page.check("input[name=all_bad]")
    page.fill("textarea[name=comment]", "None of them mentions <script>.")
    shot(page, "6-ranking-dnd")
    with page.expect_navigation():
        page.dblclick("button:has-text('Submit ranking')")
    expect(page.locator(".messages")).to_contain_text("Ranking saved")

    ranking = Ranking.objects.get()
    assert groups(ranking.order) == [{b, d}, {a}, {c}]
    assert ranking.all_bad
    assert ranking.flags == {str(b): ["untrue"]}
    assert ranking.comment == "None of them mentions <script>."


def test_ranking_works_without_javascript(browser, live_server, project, lena):
    make_tasks(project, 1)
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    page = context.new_page()
    try:
        log_in(page, lena)
        with page.expect_navigation():
            page.click("button:has-text('Rank replies')")
        ids = card_ids(page)
        for cid, rank in zip(ids, ["2", "1", "2", "3"], strict=True):
            page.select_option(f"select[name=rank_{cid}]", rank)
        shot(page, "7-ranking-no-js")
        with page.expect_navigation():
            page.click("button:has-text('Submit ranking')")
        expect(page.locator(".messages")).to_contain_text("Ranking saved")
    finally:
        context.close()
    assert groups(Ranking.objects.get().order) == [{ids[1]}, {ids[0], ids[2]}, {ids[3]}]


def test_a_lost_lease_says_so_on_the_page(page, project, lena):
    task = make_tasks(project, 1)[0]
    log_in(page, lena)
    with page.expect_navigation():
        page.click("button:has-text('Rank replies')")
    expect(page.locator("#lease")).to_contain_text("Reserved for you until")
    # The lease runs out and someone else takes the task; the next renewal says so.
    Assignment.objects.filter(labeler=lena).update(expires_at="2000-01-01T00:00:00Z")
    other = ranking_claim_next(labeler=make_user("otto-b"), project=project)
    assert other.task_id == task.pk
    page.evaluate("htmx.trigger('#lease', 'renew')")
    expect(page.locator("#lease")).to_contain_text("went to someone else")
    shot(page, "8-lease-lost")


HOSTILE_MARKDOWN = (
    "**Bold** question <script>window.pwned = 'script'</script>\n"
    "[a link](javascript:window.pwned='link') [another](JaVaScRiPt:window.pwned='caps')\n"
    "<img src=x onerror=\"window.pwned='img'\"> "
    "<a href=\"javascript:window.pwned='raw'\" onclick=\"window.pwned='click'\">raw</a>\n\n"
    "```python\ndef f():\n    return 1\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
)


def test_markdown_is_rendered_and_a_hostile_payload_never_runs(page, project, lena):
    project.guidelines = f"Guidelines {HOSTILE_MARKDOWN}"
    project.save(update_fields=["guidelines"])
    prompt = make_prompt(project, HOSTILE_MARKDOWN)
    make_tasks(project, prompts=[prompt])  # the completions repeat the prompt's text
    log_in(page, lena)
    with page.expect_navigation():
        page.click("button:has-text('Rank replies')")
    shot(page, "9-markdown")
    for box in (".turn-content", ".completion-text", ".guidelines .text"):
        md = page.locator(box).first
        expect(md.locator("strong")).to_have_text("Bold")
        expect(md.locator("pre code span.k").first).to_have_text("def")  # highlighted
        expect(md.locator("table td").first).to_have_text("1")
        expect(md).to_contain_text("<script>window.pwned")  # raw HTML is shown as text
    # Click every link the payload made, and hover the text where the image would be.
    for link in page.locator(".md a").all():
        link.click()
    page.locator(".turn-content").first.hover()
    page.wait_for_timeout(200)
    assert page.evaluate("window.pwned") is None
    assert page.evaluate(
        "[...document.querySelectorAll('main *')].filter(e => e.tagName === 'SCRIPT' || "
        "e.tagName === 'IMG' || [...e.attributes].some(a => a.name.startsWith('on')) || "
        "(e.getAttribute('href') || '').toLowerCase().startsWith('javascript')).length"
    ) == 0
    font = page.locator(".turn-content pre code").first.evaluate(
        "e => getComputedStyle(e).fontFamily")
    assert "mono" in font.lower()


def test_submit_goes_on_to_the_next_task_and_back_says_already_submitted(page, project, lena):
    make_tasks(project, 2)
    log_in(page, lena)
    with page.expect_navigation():
        page.click("button:has-text('Rank replies')")
    first_url = page.url
    expect(page.locator("#progress")).to_contain_text("This batch: 0 of 2 ranked")
    expect(page.locator(".completion").first).to_be_focused()  # ready for the number keys
    expect(page.locator("#lease time")).not_to_contain_text("UTC")  # the viewer's own time
    for _ in range(4):
        page.keyboard.press("Enter")  # place each reply next, in the order shown
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    expect(page.locator(".messages")).to_contain_text("Here is the next one.")
    expect(page.locator("#progress")).to_contain_text("This batch: 1 of 2 ranked")
    assert page.url != first_url and "/label/rank/" in page.url
    page.go_back()
    expect(page.locator(".alert.success")).to_contain_text("You already submitted this task")
    expect(page.locator("#ranking-form")).to_have_count(0)
    assert Ranking.objects.count() == 1


def test_writing_box_indents_code_warns_over_the_limit_and_previews(page, project, lena):
    make_prompt(project, "Show a loop.")
    log_in(page, lena)
    with page.expect_navigation():
        page.click("button:has-text('Write a reply')")
    reply = page.locator("textarea[name=reply]")
    page.keyboard.type("Like this:\n```python\nfor x in xs:\n")
    page.keyboard.press("Tab")  # inside the fence: an indent, not the next control
    page.keyboard.type("print(x)\n```\n")
    expect(reply).to_be_focused()
    expect(reply).to_have_value("Like this:\n```python\nfor x in xs:\n    print(x)\n```\n")
    page.click("button:has-text('Preview')")
    expect(page.locator("#writing-preview pre code")).to_contain_text("print(x)")
    expect(page.locator("#writing-preview .md span.k").first).to_have_text("for")
    page.check("input[data-monospace]")
    assert "mono" in reply.evaluate("e => getComputedStyle(e).fontFamily").lower()
    # A paste over the limit is kept whole, with a warning (the server refuses it, not the box).
    reply.evaluate("(e) => { e.value = 'x'.repeat(20005);"
                   " e.dispatchEvent(new Event('input', {bubbles: true})); }")
    expect(page.locator("[data-limit-warning]")).to_contain_text("Too long by 5 characters")
    assert reply.evaluate("e => e.value.length") == 20005
    reply.focus()
    page.keyboard.press("Alt+s")  # the skip key: its reason in focus
    expect(page.locator("details.skip input[name=reason]")).to_be_focused()


def test_reloading_an_error_page_keeps_the_newer_draft(page, project, lena):
    make_prompt(project, "Explain zip().")
    log_in(page, lena)
    with page.expect_navigation():
        page.click("button:has-text('Write a reply')")
    page.keyboard.type("zip pairs items")
    Assignment.objects.filter(labeler=lena).update(expires_at="2000-01-01T00:00:00Z")
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")  # refused: the lease ran out; the text comes back
    reply = page.locator("textarea[name=reply]")
    expect(reply).to_have_value("zip pairs items")
    reply.press("End")
    page.keyboard.type(" from several iterables.")
    page.reload()  # posts the old text again: the newer draft wins
    expect(reply).to_have_value("zip pairs items from several iterables.")
    assert not Demonstration.objects.exists()
