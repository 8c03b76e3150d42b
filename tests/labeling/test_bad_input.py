"""Each input that once made a server error: now a clear 4xx with a message, nothing written.

Deep JSON (RecursionError), digits that are not ASCII or too many (`isdigit()` then `int()`),
integers past PostgreSQL's integer, NUL characters (PostgreSQL refuses them in text and jsonb),
a CSV field past the csv module's limit, numbers where text is expected.
"""
import json

import pytest
from labeling_factories import (
    completions,
    make_project,
    make_prompt,
    make_tasks,
    make_user,
    order_of,
)
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labeling.errors import Invalid
from labeling.importers import prompts_import
from labeling.models import Completion, Demonstration, Prompt, Ranking, RankingTask
from labeling.parsing import json_value, whole_number
from labeling.services.queue import demonstration_claim_next, ranking_claim_next

pytestmark = [pytest.mark.django_db, pytest.mark.urls("labeling_api_urls")]
API = "/api/labeling"
DEEP = "[" * 50_000 + "]" * 50_000
NOT_ASCII_DIGITS = ["²", "٣", "１２"]
HUGE = "9" * 5_000


def client_for(user):
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def project():
    project = make_project(slug="bad", k=4)
    make_tasks(project, 1)
    make_prompt(project)
    return project


def rows():
    return (Prompt.objects.count(), Completion.objects.count(), RankingTask.objects.count(),
            Ranking.objects.count(), Demonstration.objects.count())


def test_the_shared_parsers_refuse_what_isdigit_and_int_let_through():
    for text in [*NOT_ASCII_DIGITS, HUGE, "1.0", "", " ", "1 2", True, 1.5, None, [1]]:
        assert whole_number(text) is None, text
    assert whole_number(" 42 ") == 42 and whole_number(-3, minimum=-5) == -3
    assert whole_number(2**31, maximum=2**31 - 1) is None
    for text in (DEEP, '{"a": NaN}', "[1e999999]x", "1" * 5000):
        with pytest.raises(Invalid):
            json_value(text)
    with pytest.raises(Invalid, match="nested too deeply"):
        json_value("[" * 40 + "]" * 40)  # parses fine, but deeper than any shape we take


def test_a_deeply_nested_body_is_a_400_on_every_json_endpoint(project):
    labeler, staff = make_user(), make_user(is_staff=True)
    lease = ranking_claim_next(labeler=labeler)
    before = rows()
    for user, url in [
        (labeler, f"{API}/tasks/next/"),
        (labeler, f"{API}/assignments/{lease.pk}/ranking/"),
        (labeler, f"{API}/assignments/{lease.pk}/demonstration/"),
        (labeler, f"{API}/assignments/{lease.pk}/skip/"),
        (labeler, f"{API}/dialogues/"),
        (staff, f"{API}/projects/bad/import/"),
        (staff, f"{API}/projects/bad/ranking-tasks/"),
    ]:
        response = client_for(user).post(url, DEEP, content_type="application/json")
        assert response.status_code == 400, url
        assert "nested too deeply" in response.json()["detail"]
    assert rows() == before


def test_a_deeply_nested_import_line_is_reported_as_that_line(project):
    content = json.dumps({"prompt": "fine"}) + "\n" + DEEP + "\n"
    with pytest.raises(Invalid) as refused:
        prompts_import(project=project, content=content, format="jsonl")
    assert refused.value.errors[0][0] == 2 and "nested too deeply" in refused.value.errors[0][1]
    assert Prompt.objects.count() == 2


def test_a_csv_field_past_the_csv_limit_is_refused(project):
    content = "prompt\n" + "x" * 131_073 + "\n"
    response = client_for(make_user(is_staff=True)).post(
        f"{API}/projects/bad/import/", {"content": content, "format": "csv"}, format="json")
    assert response.status_code == 400 and "Not CSV" in response.json()["lines"][0]["message"]
    assert Prompt.objects.count() == 2


@pytest.mark.parametrize("bad", [*NOT_ASCII_DIGITS, HUGE])
def test_ids_and_counts_that_are_not_plain_digits_are_refused(project, bad):
    labeler, staff = make_user(), make_user(is_staff=True)
    lease = ranking_claim_next(labeler=labeler)
    api = client_for(labeler)
    before = rows()
    url = f"{API}/assignments/{lease.pk}/ranking/"
    for body in ({"order": [bad, bad, bad, bad]},
                 {"order": order_of(lease.task), "flags": {bad: ["untrue"]}}):
        response = api.post(url, body, format="json")
        assert response.status_code == 400 and "completion ids" in response.json()["error"]
    line = json.dumps({"prompt": "new one", "demonstrations_needed": bad})
    response = client_for(staff).post(f"{API}/projects/bad/import/",
                                      {"content": line, "format": "jsonl"}, format="json")
    assert response.status_code == 400 and "demonstrations_needed" in response.content.decode()
    push = {"batch_key": "b", "tasks": [{"prompt_id": bad, "completions": completions(4)}]}
    assert client_for(staff).post(f"{API}/projects/bad/ranking-tasks/", push,
                                  format="json").status_code == 400
    assert rows() == before


@pytest.mark.urls("labeling_urls")
@pytest.mark.parametrize("bad", [*NOT_ASCII_DIGITS, HUGE])
def test_a_suggestion_id_that_is_not_plain_digits_is_ignored(client, project, bad):
    client.force_login(make_user())
    response = client.get("/label/dialogue/bad/", {"suggestion": bad})
    assert response.status_code == 200


@pytest.mark.parametrize("field, value", [
    ("priority", 2**31), ("priority", -(2**31) - 1), ("model_version_id", 2**31),
    ("model_version_id", -1),
])
def test_integers_past_the_database_columns_are_a_400(project, field, value):
    prompt = make_prompt(project)
    completion_list = completions(4)
    body = {"batch_key": "big", "tasks": [{"prompt_id": prompt.pk, "completions": completion_list}]}
    if field == "priority":
        body["priority"] = value
    else:
        completion_list[0]["model_version_id"] = value
    before = rows()
    response = client_for(make_user(is_staff=True)).post(
        f"{API}/projects/bad/ranking-tasks/", body, format="json")
    assert response.status_code == 400 and field in response.json()["error"]
    assert rows() == before


@pytest.mark.parametrize("sampling", [{"nested": {"deep": [1]}}, {"t": float("inf")}, [1]])
def test_sampling_settings_that_postgres_cannot_store_are_refused(project, sampling):
    from labeling.services.ranking_tasks import ranking_tasks_create

    prompt = make_prompt(project)
    completion_list = completions(4)
    completion_list[0]["sampling"] = sampling
    with pytest.raises(Invalid, match="sampling setting"):
        ranking_tasks_create(project=project, batch_key="nul",
                             prompt_completions=[(prompt.pk, completion_list)])
    assert not RankingTask.objects.filter(batch_key="nul").exists()


def test_nul_characters_in_sampling_settings_are_dropped_as_in_any_text(project):
    prompt = make_prompt(project)
    completion_list = completions(4)
    completion_list[0]["sampling"] = {"note\u0000": "a\u0000b", "seed": 3}
    response = client_for(make_user(is_staff=True)).post(
        f"{API}/projects/bad/ranking-tasks/",
        {"batch_key": "nul", "tasks": [{"prompt_id": prompt.pk, "completions": completion_list}]},
        format="json")
    assert response.status_code == 201
    assert Completion.objects.get(text="Answer 0", prompt=prompt).sampling == {"note": "ab",
                                                                               "seed": 3}


def test_numbers_where_text_is_expected_are_refused_not_stored_as_text(project):
    labeler = make_user()
    api = client_for(labeler)
    lease = demonstration_claim_next(labeler=labeler)
    for body in ({"reply": 5, "client_token": "t"}, {"reply": "ok", "client_token": 7},
                 {"reply": True, "client_token": "t"}):
        response = api.post(f"{API}/assignments/{lease.pk}/demonstration/", body, format="json")
        assert response.status_code == 400, body
    assert api.post(f"{API}/assignments/{lease.pk}/skip/", {"reason": 5},
                    format="json").status_code == 400
    assert api.post(f"{API}/tasks/next/", {"project": 5}, format="json").status_code == 400
    assert not Demonstration.objects.exists()
    lease.refresh_from_db()
    assert lease.status == "active"


def test_nul_characters_never_reach_postgres(project):
    labeler = make_user()
    api = client_for(labeler)
    lease = demonstration_claim_next(labeler=labeler)
    response = api.post(f"{API}/assignments/{lease.pk}/demonstration/",
                        {"reply": "a\u0000b", "client_token": "t\u0000"}, format="json")
    assert response.status_code == 400
    assert api.post(f"{API}/tasks/next/", {"project": "bad\u0000"},
                    format="json").status_code == 400
    dialogue = {"project": "bad", "client_token": "d", "turns": [
        {"role": "user", "content": "q\u0000"}, {"role": "assistant", "content": "a"}]}
    response = api.post(f"{API}/dialogues/", dialogue, format="json")
    assert response.status_code == 201 and response.json()["turns"][0]["content"] == "q"
