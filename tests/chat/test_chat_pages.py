"""The chat pages and services: who may talk to what, branches, limits, escaping, streaming.

The inference worker is not running here (its own tests run it): replies are finished through
the same service the worker calls, and the streaming endpoint reads events written to the real
Redis as the worker writes them.
"""

import json

import pytest
from chat_helpers import version
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chat import streaming
from chat.models import ChatComparison, Conversation, Message
from chat.services.comparisons import chat_comparisons_create, comparisons_collect_finished
from chat.services.conversations import chat_models_allow, conversation_start
from labeling.models import Project
from training.errors import Invalid
from training.inference import channel
from training.models import Generation, ModelVersion
from training.services.generations import clean_sampling, generation_finish, generation_request

pytestmark = pytest.mark.django_db
User = get_user_model()
TEXT = '<div class="text">{}</div>'  # a message's text on the page


@pytest.fixture
def open_model(project):
    model = version("sft-1", project=project)
    chat_models_allow(project=project, versions=[model])
    return model


def finish(message: Message, text: str = "A reply.") -> None:
    generation_finish(message.generation, text=text, finish_reason="stop", completion_tokens=3)


def start(lena, project, model, text="How do I sort a list?") -> Conversation:
    return conversation_start(labeler=lena, project=project, model_version=model, text=text)


def test_a_labeler_chats_only_with_models_the_project_opened(lena_client, project, open_model):
    closed = version("policy-2", kind=ModelVersion.Kind.POLICY, project=project)
    refused = lena_client.post("/chat/start/", {"project": "help", "model_version": closed.pk,
                                                "text": "Hello there"})  # fmt: skip
    assert refused.status_code == 403 and "not open for chat" in refused.text
    assert "Hello there" in refused.text  # what was typed is kept
    assert not Conversation.objects.exists() and not Generation.objects.exists()

    ok = lena_client.post("/chat/start/", {"project": "help", "model_version": open_model.pk,
                                           "text": "Hello there"})  # fmt: skip
    conversation = Conversation.objects.get()
    assert ok.status_code == 302 and ok["Location"] == f"/chat/{conversation.pk}/"
    reply = conversation.current
    assert reply.role == "assistant" and reply.parent.content == "Hello there"
    assert reply.generation.turns == [{"role": "user", "content": "Hello there"}]
    assert reply.generation.status == Generation.Status.QUEUED


def test_someone_elses_chat_is_not_found_and_staff_only_read_it(client, lena, project,
                                                                 open_model):  # fmt: skip
    conversation = start(lena, project, open_model)
    finish(conversation.current)
    other = User.objects.create_user("omar")
    client.force_login(other)
    assert client.get(f"/chat/{conversation.pk}/").status_code == 404
    assert client.post(f"/chat/{conversation.pk}/send/", {"text": "hi"}).status_code == 404
    assert "How do I sort" not in client.get("/chat/").text

    staff = User.objects.create_user("sam", is_staff=True)
    client.force_login(staff)
    page = client.get(f"/chat/{conversation.pk}/")
    assert page.status_code == 200 and "read only" in page.text and "composer" not in page.text
    assert client.post(f"/chat/{conversation.pk}/send/", {"text": "hi"}).status_code == 404
    assert Message.objects.count() == 2


def test_the_next_message_waits_for_the_reply(lena_client, lena, project, open_model):
    conversation = start(lena, project, open_model)
    early = lena_client.post(f"/chat/{conversation.pk}/send/", {"text": "And reversed?"})
    assert early.status_code == 409 and "Wait for the model" in early.text
    assert "And reversed?" in early.text and Message.objects.count() == 2

    finish(conversation.current, "Use sorted().")
    assert lena_client.post(f"/chat/{conversation.pk}/send/",
                            {"text": "And reversed?"}).status_code == 302  # fmt: skip
    conversation.refresh_from_db()
    assert conversation.current.generation.turns == [
        {"role": "user", "content": "How do I sort a list?"},
        {"role": "assistant", "content": "Use sorted()."},
        {"role": "user", "content": "And reversed?"},
    ]


def test_editing_and_regenerating_make_branches_a_labeler_can_switch(lena_client, lena, project,
                                                                     open_model):  # fmt: skip
    conversation = start(lena, project, open_model, "First question")
    first_question, first_reply = conversation.current.parent, conversation.current
    finish(first_reply, "First answer")

    lena_client.post(f"/chat/{conversation.pk}/messages/{first_reply.pk}/regenerate/")
    conversation.refresh_from_db()
    second_reply = conversation.current
    assert second_reply.parent == first_question and second_reply != first_reply
    assert second_reply.generation.turns == first_reply.generation.turns
    finish(second_reply, "Second answer")

    lena_client.post(f"/chat/{conversation.pk}/messages/{first_question.pk}/edit/",
                     {"text": "Better question"})  # fmt: skip
    conversation.refresh_from_db()
    edited = conversation.current.parent
    assert edited.parent is None and edited.content == "Better question"
    page = lena_client.get(f"/chat/{conversation.pk}/").text
    assert "2 / 2" in page and TEXT.format("First question") not in page

    lena_client.post(f"/chat/{conversation.pk}/messages/{first_question.pk}/show/")
    page = lena_client.get(f"/chat/{conversation.pk}/").text
    assert TEXT.format("First question") in page and TEXT.format("Second answer") in page
    assert "1 / 2" in page
    assert Message.objects.count() == 5  # nothing overwritten


def test_model_and_user_text_is_escaped(lena_client, lena, project, open_model):
    conversation = start(lena, project, open_model, "<img src=x onerror=alert(1)>")
    finish(conversation.current, "<script>alert('x')</script><b>bold</b>")
    page = lena_client.get(f"/chat/{conversation.pk}/").text
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert "<img src=x" not in page and "&lt;b&gt;bold" in page


def test_the_rate_limit_refuses_with_a_message_and_writes_nothing(
    lena_client, lena, project, open_model, settings
):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 2
    conversation = start(lena, project, open_model)
    finish(conversation.current)
    lena_client.post(f"/chat/{conversation.pk}/send/", {"text": "two"})
    conversation.refresh_from_db()
    finish(conversation.current)
    before = Message.objects.count()
    refused = lena_client.post(f"/chat/{conversation.pk}/send/", {"text": "three"})
    assert refused.status_code == 429 and "limit is 2" in refused.text
    assert Message.objects.count() == before and Generation.objects.count() == 2


def test_forms_need_the_csrf_token(lena, project, open_model):
    client = Client(enforce_csrf_checks=True)
    client.force_login(lena)
    response = client.post("/chat/start/", {"project": "help", "model_version": open_model.pk,
                                            "text": "hi"})  # fmt: skip
    assert response.status_code == 403 and not Conversation.objects.exists()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"temperature": 5}, "temperature must be between"),
        ({"top_p": 0}, "top_p must be between"),
        ({"max_new_tokens": "lots"}, "max_new_tokens must be a number"),
        ({"max_new_tokens": 10**6}, "max_new_tokens must be between"),
        ({"temperature": float("nan")}, "temperature must be between"),
        ({"seed": -1}, "seed must be"),
        ({"beam": 4}, "unknown sampling setting"),
    ],
)
def test_bad_sampling_settings_are_refused_by_name(raw, message):
    with pytest.raises(Invalid, match=message):
        clean_sampling(raw)


def test_a_reward_model_cannot_be_asked_for_text(project, lena):
    with pytest.raises(Invalid, match="writes no text"):
        generation_request(model_version=version("rm-1", kind=ModelVersion.Kind.REWARD),
                           turns=[{"role": "user", "content": "hi"}], user=lena)  # fmt: skip


@pytest.fixture(autouse=True)
def short_streams(monkeypatch):
    """A stream that would wait for a worker ends after a few seconds here."""
    monkeypatch.setattr(streaming, "STREAM_SECONDS", 3)


def events_of(response) -> list[tuple[str, str, str]]:
    """(id, event, text) of each server-sent event of a whole response."""
    got = []
    body = b"".join(response.streaming_content).decode()
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in fields:
            got.append((fields.get("id", ""), fields["event"],
                        json.loads(fields["data"])["text"]))  # fmt: skip
    return got


def test_the_stream_relays_the_workers_events_and_resumes_after_the_last_one(
    lena_client, lena, project, open_model, inference_redis
):
    conversation = start(lena, project, open_model)
    key = conversation.current.generation.key
    for kind, text in [("token", "Use "), ("token", "sorted"), ("done", "Use sorted")]:
        channel.publish(inference_redis, key, kind, text)
    events = events_of(lena_client.get(f"/chat/replies/{key}/events/"))
    assert [(kind, text) for _, kind, text in events] == [
        ("token", "Use "), ("token", "sorted"), ("done", "Use sorted")]
    resumed = lena_client.get(f"/chat/replies/{key}/events/", HTTP_LAST_EVENT_ID=events[0][0])
    assert [kind for _, kind, _ in events_of(resumed)] == ["token", "done"]

    other = Client()
    other.force_login(User.objects.create_user("omar"))
    assert other.get(f"/chat/replies/{key}/events/").status_code == 404


def test_the_stream_of_a_finished_reply_comes_from_the_database(
    lena_client, lena, project, open_model, inference_redis
):
    conversation = start(lena, project, open_model)
    finish(conversation.current, "Stored reply")  # its Redis stream expired long ago
    key = conversation.current.generation.key
    events = events_of(lena_client.get(f"/chat/replies/{key}/events/"))
    assert events[-1][1:] == ("done", "Stored reply")


def test_the_stream_says_when_no_worker_is_running(lena_client, lena, project, open_model,
                                                   inference_redis):  # fmt: skip
    conversation = start(lena, project, open_model)
    key = conversation.current.generation.key
    events = events_of(lena_client.get(f"/chat/replies/{key}/events/"))
    assert events[-1][1] == "down" and "not running" in events[-1][2]
    page = lena_client.get(f"/chat/{conversation.pk}/").text
    assert f"/chat/replies/{key}/retry/" in page  # the retry the page offers


def test_only_staff_turn_chat_messages_into_comparisons(client, lena, project, open_model):
    conversation = start(lena, project, open_model)
    reply = conversation.current
    finish(reply, "Use sorted().")
    client.force_login(lena)
    url = f"/chat/{conversation.pk}/messages/{reply.pk}/compare/"
    assert client.post(url).status_code == 302 and not ChatComparison.objects.exists()

    staff = User.objects.create_user("sam", is_staff=True)
    client.force_login(staff)
    assert client.post(url).status_code == 302
    comparison = ChatComparison.objects.get()
    alternatives = list(comparison.alternatives.all())
    assert len(alternatives) == project.k - 1
    assert {g.on_done for g in alternatives} == {"chat.comparison_collect"}
    assert all(g.turns == [{"role": "user", "content": "How do I sort a list?"}]
               for g in alternatives)  # fmt: skip
    assert len({g.sampling["seed"] for g in alternatives}) == project.k - 1
    again = client.post(url)  # a message is compared once
    assert again.status_code == 400 and ChatComparison.objects.count() == 1


def test_random_comparisons_need_finished_model_messages(client, project, open_model):
    client.force_login(User.objects.create_user("sam", is_staff=True))
    response = client.post("/chat/compare/", {"project": "help", "count": "3"})
    assert response.status_code == 400 and "No model-written chat messages" in response.text
    assert not Generation.objects.exists()


def test_a_live_suggestion_answers_the_dialogue_so_far(lena_client, project, open_model):
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
             {"role": "user", "content": "How do I sort a list?"}]  # fmt: skip
    response = lena_client.post("/chat/suggest/help/", {"turns": turns, "seed": 7},
                                content_type="application/json")  # fmt: skip
    assert response.status_code == 202
    generation = Generation.objects.get(key=response.json()["key"])
    assert generation.turns == turns and generation.model_version == open_model
    assert generation.sampling["seed"] == 7
    assert response.json()["events_url"] == f"/chat/replies/{generation.key}/events/"


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ("not json", 400, "must be JSON"),
        ("[1, 2]", 400, "JSON object"),
        ('{"turns": []}', 400, "Write the user's turn first"),
        ('{"turns": [{"role": "assistant", "content": "x"}]}', 400, "role"),
        ('{"turns": [{"role": "user", "content": "   "}]}', 400, "empty"),
        ("[" * 100_000, 400, "must be JSON"),
    ],
)
def test_bad_suggestion_requests_are_refused_with_a_message(lena_client, project, open_model,
                                                            body, status, message):  # fmt: skip
    response = lena_client.post("/chat/suggest/help/", body, content_type="application/json")
    assert response.status_code == status and message in response.json()["error"]
    assert not Generation.objects.exists()


def test_no_live_suggestions_without_a_model_open_for_chat(lena_client, project):
    response = lena_client.post("/chat/suggest/help/",
                                {"turns": [{"role": "user", "content": "Hi"}]},
                                content_type="application/json")  # fmt: skip
    assert response.status_code == 403 and "No model is open" in response.json()["error"]


def test_the_sweep_collects_comparisons_whose_callback_was_lost(lena, project, open_model):
    conversation = start(lena, project, open_model)
    finish(conversation.current, "Use sorted().")
    staff = User.objects.create_user("sam", is_staff=True)
    [comparison] = chat_comparisons_create(project=project, requested_by=staff,
                                           messages=[conversation.current])  # fmt: skip
    alternatives = list(comparison.alternatives.all())
    for i, generation in enumerate(alternatives[:-1]):
        generation_finish(generation, text=f"Alternative {i}", finish_reason="stop",
                          completion_tokens=2)  # fmt: skip
    assert comparisons_collect_finished() == 0  # one is still being written
    Generation.objects.filter(pk=alternatives[-1].pk).update(status=Generation.Status.DONE,
                                                             text="Last one")  # fmt: skip
    assert comparisons_collect_finished() == 1
    comparison.refresh_from_db()
    assert comparison.status == ChatComparison.Status.CREATED
    texts = {item.completion.text for item in comparison.ranking_task.items.all()}
    assert texts == {"Use sorted().", "Alternative 0", "Alternative 1", "Last one"}
    assert comparisons_collect_finished() == 0  # once


def test_a_reply_with_a_nul_byte_is_stored_without_it(lena, project, open_model):
    """Models can write a NUL token; PostgreSQL text refuses it: the reply must still land."""
    conversation = start(lena, project, open_model)
    finish(conversation.current, "before\x00after")
    conversation.current.generation.refresh_from_db()
    assert conversation.current.generation.text == "beforeafter"
    assert conversation.current.generation.status == Generation.Status.DONE


@pytest.mark.parametrize("page", ["/chat/", "/chat/arena/"])
def test_the_model_choices_take_the_same_queries_however_many_projects(lena_client, project,
                                                                       page):  # fmt: skip
    def open_project(n: int) -> None:
        other = Project.objects.create(name=f"Team {n}", slug=f"team-{n}", k=4)
        policy = version(f"policy-t{n}", project=other, kind=ModelVersion.Kind.POLICY)
        chat_models_allow(project=other, versions=[version(f"sft-t{n}", project=other), policy])

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert lena_client.get(page).status_code == 200
        return len(captured)

    open_project(0)
    baseline = queries()
    for n in range(1, 6):
        open_project(n)
    assert queries() == baseline
    Project.objects.create(name="Closed", slug="closed", k=4)  # opened nothing: not offered
    text = lena_client.get(page).text
    assert all(f"Team {n}" in text for n in range(6)) and "Closed" not in text
    assert page == "/chat/arena/" or all(f"policy-t{n}" in text for n in range(6))
