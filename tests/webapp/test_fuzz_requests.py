"""Property: whatever a client sends to a JSON API endpoint or a main form, the answer is never
a server error, and an answer of 4xx leaves the database as it was (no partial write).

Hypothesis draws bodies from a mix of plausible values (real ids, real orders, real turns) and
nasty ones (NUL, "²", 5,000 digits, 2**31, 2**63, nesting, numbers for text, text for
numbers). Every example runs inside a transaction that is rolled back afterwards, so each one
starts from the same rows. The examples are seeded (`derandomize`) and bounded
(`FUZZ_EXAMPLES` per endpoint, default 80) so `make test` runs it in about a minute; raise the
count to hunt further.
"""
import json
import os
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from chat.models import ArenaBattle, ChatComparison, Conversation, Message
from chat.services.arena import arena_start
from chat.services.conversations import chat_models_allow, conversation_start
from labeling.models import (
    Assignment,
    Completion,
    Demonstration,
    ExportSnapshot,
    Project,
    Prompt,
    Ranking,
    RankingTask,
    Skip,
    Vote,
)
from labeling.services.demonstrations import prompt_create
from labeling.services.projects import project_create
from labeling.services.queue import demonstration_claim_next, ranking_claim_next
from labeling.services.ranking_tasks import ranking_tasks_create
from training.models import Generation, ModelVersion, TrainingRun
from training.services.generations import generation_finish

pytestmark = pytest.mark.django_db
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "80")), deadline=None, derandomize=True,
    database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow, HealthCheck.data_too_large],
)

NASTY_TEXT = st.sampled_from([
    "", " ", "\x00", "a\x00b", "²", "٣", "１２", "9" * 5000, "2147483648", "-1", "0", "1e309",
    "NaN", "<script>alert(1)</script>", "'; DROP TABLE x; --", "\ud7ff", "x" * 20_001, "ok",
])
TEXT = st.one_of(NASTY_TEXT, st.text(max_size=30))
WORD = st.text("abcxyz-_0123456789", min_size=1, max_size=12)
SOME_TEXT = st.integers(0, 2).flatmap(lambda i: TEXT if i == 2 else WORD)  # mostly fine
INTS = st.one_of(
    st.sampled_from([0, -1, 1, 2**31 - 1, 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 10**30]),
    st.integers(-3, 10**6),
)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, TEXT,
                    st.floats(allow_nan=False, allow_infinity=False))
SPOIL_RATE = 0.4
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=10,
)


@dataclass
class World:
    project: Project
    labeler_api: APIClient
    staff_api: APIClient
    labeler_web: object
    staff_web: object
    ranking: Assignment
    demonstration: Assignment
    completion_ids: list[int]
    prompt_ids: list[int]
    chat_model_id: int  # open for chat in the project
    conversation: Conversation  # the labeler's, its reply written
    battle: ArenaBattle  # the labeler's, both replies written


def fingerprint():
    """Every row count, and the state of the rows a refused request might half-change."""
    counts = tuple(model.objects.count() for model in (
        Project, Prompt, Completion, RankingTask, Assignment, Demonstration, Ranking, Skip,
        ExportSnapshot, TrainingRun, ModelVersion, Conversation, Message, Generation,
        ChatComparison, ArenaBattle, Vote))
    leases = tuple(Assignment.objects.order_by("pk").values_list("status", "expires_at"))
    tasks = tuple(RankingTask.objects.order_by("pk").values_list(
        "status", "rankings_count", "rankings_needed", "priority"))
    prompts = tuple(Prompt.objects.order_by("pk").values_list("demonstrations_count"))
    return counts, leases, tasks, prompts


@pytest.fixture
def world(client, django_user_model):
    from django.test import Client

    project = project_create(name="Fuzz", slug="fuzz", k=4, overlap=2)
    prompts = [
        prompt_create(project=project, turns=[{"role": "user", "content": f"Q{i}?"}],
                      source=Prompt.Source.IMPORTED)
        for i in range(3)
    ]
    ranking_tasks_create(project=project, batch_key="fuzz", prompt_completions=[
        (p.pk, [{"text": f"A{i}", "model_version_id": 1} for i in range(4)]) for p in prompts
    ])
    labeler = django_user_model.objects.create_user("fuzz-labeler")
    staff = django_user_model.objects.create_user("fuzz-staff", is_staff=True)
    ranking = ranking_claim_next(labeler=labeler)
    demonstration = demonstration_claim_next(labeler=labeler)
    labeler_api, staff_api = APIClient(), APIClient()
    labeler_api.force_authenticate(labeler)
    staff_api.force_authenticate(staff)
    labeler_web, staff_web = Client(), Client()
    labeler_web.force_login(labeler)
    staff_web.force_login(staff)
    ids = list(ranking.task.items.order_by("position").values_list("completion_id", flat=True))
    chat_models = [ModelVersion.objects.create(kind="sft", name=f"fuzz-sft-{i}", project=project,
                                               checkpoint_dir="/m", tokenizer_path="/m/t")
                   for i in range(2)]  # fmt: skip
    chat_models_allow(project=project, versions=chat_models)
    conversation = conversation_start(labeler=labeler, project=project,
                                      model_version=chat_models[0], text="Hi")  # fmt: skip
    battle = arena_start(labeler=labeler, project=project, text="Hi")
    for generation in Generation.objects.all():
        generation_finish(generation, text="Hello.", finish_reason="stop", completion_tokens=2)
    conversation.refresh_from_db()
    return World(project, labeler_api, staff_api, labeler_web, staff_web, ranking,
                 demonstration, ids, [p.pk for p in prompts], chat_models[0].pk, conversation,
                 battle)


def check(send):
    """Send one request inside a transaction that is rolled back: no 5xx; a 4xx wrote nothing."""
    with transaction.atomic():
        before = fingerprint()
        response = send()
        assert response.status_code < 500, response
        if response.status_code >= 400:
            assert fingerprint() == before, f"a {response.status_code} wrote something"
        transaction.set_rollback(True)


def body(data, fields: dict):
    """A plausible body with at most one field spoiled (left out, or any JSON value at all), so
    most requests get past the first check and reach the service."""
    drawn = data.draw(st.fixed_dictionaries(fields))
    dice = data.draw(st.randoms(use_true_random=True))  # uniform: Hypothesis favours edges
    if dice.random() < SPOIL_RATE:
        spoiled = dice.choice(sorted(fields))
        if dice.random() < 0.2:
            drawn.pop(spoiled)
        else:
            drawn[spoiled] = data.draw(JSON)
    return drawn


def assignment_id(data, world, kind):
    lease = world.ranking if kind == "ranking" else world.demonstration
    return data.draw(st.sampled_from([lease.pk, lease.pk, 0, 2**31, 2**63, 10**25]))


def order(world):
    ids = world.completion_ids
    return st.one_of(
        st.permutations(ids).map(lambda p: [[i] for i in p]),
        st.permutations(ids).map(lambda p: [p[:2], *[[i] for i in p[2:]]]),
        st.permutations(ids).map(lambda p: [str(i) for i in p]),
    )


def turns(ends_with="assistant"):
    contents = st.lists(SOME_TEXT, min_size=1, max_size=5)
    return contents.map(lambda cs: [
        {"role": ("user", "assistant")[i % 2], "content": c} for i, c in enumerate(cs)
    ])


def api_ranking(data, world):
    url = f"/api/labeling/assignments/{assignment_id(data, world, 'ranking')}/ranking/"
    fields = {"order": order(world), "all_bad": st.booleans(), "comment": SOME_TEXT,
              "flags": st.dictionaries(st.sampled_from([str(i) for i in world.completion_ids]),
                                       st.lists(st.sampled_from(["harmful", "untrue", "x"]))),
              "time_spent_ms": INTS}
    return lambda: world.labeler_api.post(url, body(data, fields), format="json")


def api_demonstration(data, world):
    url = f"/api/labeling/assignments/{assignment_id(data, world, 'demo')}/demonstration/"
    fields = {"reply": SOME_TEXT, "client_token": SOME_TEXT, "time_spent_ms": INTS}
    return lambda: world.labeler_api.post(url, body(data, fields), format="json")


def api_dialogue(data, world):
    fields = {"project": st.sampled_from(["fuzz", "nope"]), "turns": turns(),
              "client_token": SOME_TEXT, "suggestion_id": st.sampled_from(world.completion_ids),
              "time_spent_ms": INTS}
    return lambda: world.labeler_api.post("/api/labeling/dialogues/", body(data, fields),
                                          format="json")


def api_next(data, world):
    fields = {"kind": st.sampled_from(["ranking", "demonstration"]),
              "project": st.sampled_from(["fuzz", "nope"])}
    return lambda: world.labeler_api.post("/api/labeling/tasks/next/", body(data, fields),
                                          format="json")


def api_lease(data, world):
    kind = data.draw(st.sampled_from(["ranking", "demo"]))
    base = f"/api/labeling/assignments/{assignment_id(data, world, kind)}/"
    action = data.draw(st.sampled_from(["", "renew/", "skip/"]))
    if action == "":
        return lambda: world.labeler_api.get(base)
    return lambda: world.labeler_api.post(base + action, body(data, {"reason": SOME_TEXT}),
                                          format="json")


def api_import(data, world):
    line = st.fixed_dictionaries({}, optional={
        "prompt": SOME_TEXT, "response": SOME_TEXT, "turns": turns("user"), "messages": turns(),
        "demonstrations_needed": INTS})
    content = st.one_of(st.lists(line, max_size=3).map(
        lambda rows: "\n".join(json.dumps(r) for r in rows)), SOME_TEXT)
    fields = {"content": content, "format": st.sampled_from(["jsonl", "csv"]),
              "demonstrations_needed": INTS}
    return lambda: world.staff_api.post("/api/labeling/projects/fuzz/import/",
                                        body(data, fields), format="json")


def api_ranking_tasks(data, world):
    completion = st.fixed_dictionaries({"text": SOME_TEXT}, optional={
        "model_label": SOME_TEXT, "model_version_id": st.one_of(st.integers(0, 99), INTS),
        "sampling": st.dictionaries(SOME_TEXT, SCALARS, max_size=3)})
    task = st.fixed_dictionaries({
        "prompt_id": st.one_of(st.sampled_from(world.prompt_ids), JSON),
        "completions": st.lists(completion, min_size=4, max_size=4),
    })
    fields = {"batch_key": WORD, "priority": INTS, "tasks": st.lists(task, min_size=1, max_size=2)}
    return lambda: world.staff_api.post("/api/labeling/projects/fuzz/ranking-tasks/",
                                        body(data, fields), format="json")


def api_staff_reads(data, world):
    endpoint = data.draw(st.sampled_from(["export", "agreement", "snapshots"]))
    params = data.draw(st.fixed_dictionaries({}, optional={
        "as_of": st.one_of(SOME_TEXT, st.sampled_from([
            "2024-01-01T00:00Z", "0001-01-01T00:00+01:00", "9999-12-31T23:59-05:00",
            "2025-02-30T00:00Z"])),
        "snapshot": st.one_of(SOME_TEXT, st.just("fuzz.1@20240101T000000.000000Z")),
        "kind": st.one_of(SOME_TEXT, st.sampled_from(["sft", "comparisons", "rankings"])),
    }))
    params = {k: v.replace("\x00", "") for k, v in params.items()}  # not sendable in a URL
    url = f"/api/labeling/projects/fuzz/{endpoint}/"

    def send():
        if endpoint == "snapshots":
            return world.staff_api.post(url + "?" + urlencode(params))
        response = world.staff_api.get(url, params)
        if hasattr(response, "streaming_content"):
            b"".join(response.streaming_content)  # errors while streaming are errors too
        return response

    return send


def form_ranking(data, world):
    url = f"/label/rank/{assignment_id(data, world, 'ranking')}/submit/"
    fields = {f"rank_{i}": st.one_of(st.sampled_from(["1", "2", "3", "4"]), SOME_TEXT)
              for i in world.completion_ids}
    fields.update({f"flags_{world.completion_ids[0]}": st.sampled_from(["harmful", "x"]),
                   "comment": SOME_TEXT, "all_bad": st.sampled_from(["on", ""]),
                   "time_spent_ms": SOME_TEXT, "opened_at": SOME_TEXT, "display_order": SOME_TEXT})
    post = data.draw(st.fixed_dictionaries({}, optional=fields))
    return lambda: world.labeler_web.post(url, post)


def form_demonstration(data, world):
    url = f"/label/write/{assignment_id(data, world, 'demo')}/submit/"
    post = data.draw(st.fixed_dictionaries({}, optional={
        "reply": SOME_TEXT, "client_token": SOME_TEXT, "time_spent_ms": SOME_TEXT,
        "opened_at": SOME_TEXT}))
    return lambda: world.labeler_web.post(url, post)


def form_dialogue(data, world):
    post = data.draw(st.fixed_dictionaries({}, optional={
        "turn": st.lists(SOME_TEXT, max_size=45), "action": st.sampled_from(["add", "remove",
                                                                       "submit", "x"]),
        "client_token": SOME_TEXT,
        "suggestion": st.one_of(SOME_TEXT, st.just(str(world.completion_ids[0]))),
        "live_suggestions": st.one_of(SOME_TEXT, st.sampled_from([
            json.dumps({"2": str(world.conversation.current.generation.key)}), '{"1": "x"}',
            '{"²": null}', "[1]", json.dumps({"9" * 40: "k"})])),
        "time_spent_ms": SOME_TEXT, "opened_at": SOME_TEXT}))
    if data.draw(st.booleans()):
        query = {"suggestion": data.draw(SOME_TEXT).replace("\x00", "")}
        return lambda: world.labeler_web.get("/label/dialogue/fuzz/", query)
    return lambda: world.labeler_web.post("/label/dialogue/fuzz/submit/", post)


def form_queue(data, world):
    kind = data.draw(st.sampled_from(["ranking", "demo"]))
    lease = assignment_id(data, world, kind)
    url = data.draw(st.sampled_from(["/label/rank/next/", "/label/write/next/",
                                     f"/label/tasks/{lease}/renew/",
                                     f"/label/tasks/{lease}/skip/"]))
    post = data.draw(st.fixed_dictionaries({}, optional={
        "project": st.one_of(SOME_TEXT, st.just("fuzz")), "reason": SOME_TEXT}))
    return lambda: world.labeler_web.post(url, post)


def form_training_start(data, world):
    kind = data.draw(st.sampled_from(["sft", "reward", "ppo", "sample"]))  # none can start here
    post = data.draw(st.fixed_dictionaries({}, optional={
        "cfg_max_steps": SOME_TEXT, "cfg_lr": SOME_TEXT, "cfg_lora": SOME_TEXT,
        "cfg_nope": SOME_TEXT, "preset": st.one_of(SOME_TEXT, st.just("tiny")),
        "input_model": SOME_TEXT, "reward_model": SOME_TEXT, "request_token": SOME_TEXT}))
    return lambda: world.staff_web.post(f"/training/projects/fuzz/start/{kind}/", post)


def chat_forms(data, world):
    conversation, reply = world.conversation.pk, world.conversation.current_id
    message = data.draw(st.one_of(st.just(reply), st.just(reply - 1), INTS.map(abs)))
    url = data.draw(st.sampled_from([
        "/chat/start/", f"/chat/{conversation}/send/",
        f"/chat/{conversation}/messages/{message}/edit/",
        f"/chat/{conversation}/messages/{message}/regenerate/",
        f"/chat/{conversation}/messages/{message}/show/",
        f"/chat/{conversation}/messages/{message}/compare/", "/chat/compare/",
        "/chat/arena/start/", f"/chat/arena/{world.battle.pk}/vote/",
    ]))  # fmt: skip
    post = data.draw(st.fixed_dictionaries({}, optional={
        "text": SOME_TEXT, "project": st.one_of(SOME_TEXT, st.just("fuzz")),
        "model_version": st.one_of(SOME_TEXT, st.just(str(world.chat_model_id))),
        "count": SOME_TEXT, "model_versions": st.lists(SOME_TEXT, max_size=3),
        "outcome": st.one_of(SOME_TEXT, st.sampled_from(["a", "b", "tie", "both_bad"]))}))
    client = data.draw(st.sampled_from([world.labeler_web, world.staff_web]))
    return lambda: client.post(url, post)


def chat_suggest(data, world):
    fields = {"turns": st.one_of(turns(ends_with="user"), st.just([{"role": "user",
                                                                    "content": "Hi"}])),
              "seed": INTS}  # fmt: skip
    raw = json.dumps(body(data, fields))
    return lambda: world.labeler_web.post("/chat/suggest/fuzz/", raw,
                                          content_type="application/json")


SENDERS = [api_ranking, api_demonstration, api_dialogue, api_next, api_lease, api_import,
           api_ranking_tasks, api_staff_reads, form_ranking, form_demonstration, form_dialogue,
           form_queue, form_training_start, chat_forms, chat_suggest]


@pytest.mark.parametrize("sender", SENDERS, ids=lambda s: s.__name__)
@FUZZ
@given(data=st.data())
def test_no_request_makes_a_server_error_or_a_partial_write(world, sender, data):
    check(sender(data, world))
