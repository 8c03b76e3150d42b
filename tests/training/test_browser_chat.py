"""The live model in headless Chromium: a labeler chats while the inference worker is down (the
page says so and keeps the message), the worker starts and the reply streams in; staff turn
the reply into a ranking task; another labeler ranks it with the conversation shown above."""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect
from training_helpers import make_project
from waiting import wait_for

from chat.models import ChatComparison, Conversation
from chat.services.conversations import chat_models_allow, message_send
from labeling.models import Demonstration, RankingTask
from training.models import Generation

pytestmark = [pytest.mark.browser, pytest.mark.worker]
User = get_user_model()


def log_in(page, name):
    page.goto("/accounts/login/")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", f"pw-{name}-123")
    with page.expect_navigation():
        page.click("button[type=submit]")


def test_chat_streams_a_reply_and_a_reply_becomes_a_ranking_task(
    page, browser, live_server, chat_version, inference_worker, worker_factory
):
    project = make_project(k=4)
    chat_models_allow(project=project, versions=[chat_version])
    User.objects.create_user("lena", password="pw-lena-123")
    User.objects.create_user("sam", password="pw-sam-123", is_staff=True)
    User.objects.create_user("rita", password="pw-rita-123")

    log_in(page, "lena")
    page.goto("/chat/")
    page.fill("textarea[name=text]", "How do I <b>sort</b> a list?")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # Enter sends
    expect(page.locator(".chat-message.user .text")).to_have_text("How do I <b>sort</b> a list?")
    # No worker yet: the page says so, offers a retry, and the message is saved.
    expect(page.locator(".worker-down")).to_be_visible(timeout=15_000)
    expect(page.locator(".worker-down")).to_contain_text("not running")
    assert Conversation.objects.get().current.generation.status == Generation.Status.QUEUED

    live = inference_worker()
    expect(page.locator(".worker-down")).to_be_hidden(timeout=30_000)
    expect(page.locator("button:has-text('Regenerate')")).to_be_visible(timeout=30_000)
    reply = Conversation.objects.get().current.generation
    assert reply.status == Generation.Status.DONE
    shown = page.locator(".chat-message.assistant .text")
    expect(shown).to_have_text(reply.text or "(empty reply)")

    # Two more exchanges, so the ranking page has a history to fold away.
    conversation = Conversation.objects.get()
    for text in ("And in reverse?", "And by length?"):
        wait_for(lambda: Generation.objects.filter(status=Generation.Status.DONE).count()
                 == Generation.objects.count(), timeout=30)  # fmt: skip
        message_send(conversation=conversation, text=text)
    wait_for(lambda: Generation.objects.exclude(status=Generation.Status.DONE).count() == 0,
             timeout=30)  # fmt: skip

    worker_factory(queues=("default",))
    staff = browser.new_context(base_url=live_server.url).new_page()
    log_in(staff, "sam")
    staff.goto(f"/chat/{conversation.pk}/")
    expect(staff.locator("text=read only")).to_be_visible()
    with staff.expect_navigation():
        staff.locator("button:has-text('Make a ranking task')").last.click()
    expect(staff.locator(".messages")).to_contain_text("a ranking task of 4 replies")
    assert wait_for(lambda: ChatComparison.objects.filter(
        status=ChatComparison.Status.CREATED).exists(), timeout=90), (
        [(g.status, g.on_done, g.error) for g in Generation.objects.all()], live.output())

    task = RankingTask.objects.get(project=project)
    assert len(task.prompt.turns) == 5
    ranker = browser.new_context(base_url=live_server.url).new_page()
    log_in(ranker, "rita")
    ranker.goto("/label/")
    with ranker.expect_navigation():
        ranker.click("button:has-text('Rank replies')")
    expect(ranker.locator(".completion")).to_have_count(4)
    expect(ranker.locator(".dialogue > .turn.user .turn-content").last).to_have_text(
        "And by length?"
    )
    earlier = ranker.locator(".dialogue details.earlier")
    expect(earlier).to_contain_text("Earlier in the conversation (2 turns)")
    expect(earlier.locator(".turn").first).to_be_hidden()  # folded until opened
    earlier.locator("summary").click()
    expect(earlier.locator(".turn-content").first).to_have_text("How do I <b>sort</b> a list?")



def test_suggest_fills_an_assistant_turn_and_the_saved_dialogue_records_it(
    page, live_server, chat_version, inference_worker
):
    project = make_project(k=4)
    chat_models_allow(project=project, versions=[chat_version])
    User.objects.create_user("lena", password="pw-lena-123")
    inference_worker()
    log_in(page, "lena")
    page.goto(f"/label/dialogue/{project.slug}/")
    page.fill("#turn-1", "How do I sort a list?")
    suggest = page.locator("li.assistant [data-suggest]")
    suggest.click()
    status = page.locator("li.assistant .suggest-bar [role=status]")
    expect(status).to_contain_text("A suggestion from chatty", timeout=30_000)
    expect(suggest).to_have_text("Another")
    generation = Generation.objects.get()
    shown = page.input_value("#turn-2")  # a text box holds line breaks as \n
    assert shown == generation.text.replace("\r\n", "\n").replace("\r", "\n")
    with page.expect_navigation():
        page.click("button:has-text('Save the dialogue')")
    demonstration = Demonstration.objects.get()
    assert list(demonstration.live_suggestions.all()) == [generation]
    assert demonstration.edit_distance == 0 and demonstration.is_unedited_suggestion
