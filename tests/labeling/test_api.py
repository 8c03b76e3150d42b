"""The JSON API: token auth, the same services, errors as {"error": message} with a 4xx."""
import json

import pytest
from labeling_factories import completions, make_project, make_prompt, make_tasks, make_user
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labeling.models import Demonstration, ExportSnapshot, Prompt, Ranking, RankingTask

pytestmark = [pytest.mark.django_db, pytest.mark.urls("labeling_api_urls")]
API = "/api/labeling"


def client_for(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def project():
    project = make_project(slug="api-proj", k=4, overlap=1)
    make_tasks(project, 2)
    return project


def test_without_a_token_nothing_is_served():
    anonymous = APIClient()
    assert anonymous.post(f"{API}/tasks/next/", {}, format="json").status_code in (401, 403)
    assert anonymous.get(f"{API}/projects/").status_code in (401, 403)
    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token nope")
    assert bad.get(f"{API}/projects/").status_code == 401


def test_a_tool_labels_by_script_next_then_submit(project):
    api = client_for(make_user())
    assert [p["slug"] for p in api.get(f"{API}/projects/").json()["projects"]] == ["api-proj"]
    task = api.post(f"{API}/tasks/next/", {"project": "api-proj"}, format="json").json()
    assert task["kind"] == "ranking" and task["project"] == "api-proj"
    assert set(task["completions"][0]) == {"id", "text"}  # the model is hidden
    order = [[c["id"]] for c in task["completions"]]
    url = f"{API}/assignments/{task['id']}/ranking/"
    body = {"order": order, "flags": {str(order[0][0]): ["untrue"]}, "time_spent_ms": 4000}
    first = api.post(url, body, format="json")
    assert first.status_code == 201 and first.json()["order"] == order
    again = api.post(url, body, format="json")  # a retried request
    assert again.json()["id"] == first.json()["id"] and Ranking.objects.count() == 1
    changed = api.post(url, {**body, "order": order[::-1]}, format="json")
    assert changed.status_code == 409 and "different order" in changed.json()["error"]
    assert api.get(f"{API}/assignments/{task['id']}/").json()["status"] == "submitted"


def test_nothing_to_do_is_204(project):
    api = client_for(make_user())
    for _ in range(2):
        task = api.post(f"{API}/tasks/next/", {}, format="json").json()
        api.post(f"{API}/assignments/{task['id']}/skip/", {"reason": "not mine"}, format="json")
    assert api.post(f"{API}/tasks/next/", {}, format="json").status_code == 204


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"order": [[1], [2]]}, 400, "exactly once"),
        ({"order": "best"}, 400, "best to worst"),
        ({}, 400, "order"),
        ({"order": None, "comment": "x" * 5000}, 400, ""),
    ],
)
def test_bad_rankings_are_400_with_a_message_and_write_nothing(project, body, status, message):
    api = client_for(make_user())
    task = api.post(f"{API}/tasks/next/", {}, format="json").json()
    response = api.post(f"{API}/assignments/{task['id']}/ranking/", body, format="json")
    assert response.status_code == status
    assert message in response.json()["error"]
    assert not Ranking.objects.exists()


def test_someone_elses_or_an_unknown_assignment(project):
    owner, other = make_user(), make_user()
    task = client_for(owner).post(f"{API}/tasks/next/", {}, format="json").json()
    order = [[c["id"]] for c in task["completions"]]
    api = client_for(other)
    response = api.post(f"{API}/assignments/{task['id']}/ranking/", {"order": order},
                        format="json")
    unknown = api.post(f"{API}/assignments/999999/ranking/", {"order": order}, format="json")
    # Someone else's lease answers exactly as one that does not exist: ids tell nothing.
    assert response.status_code == unknown.status_code == 404
    assert response.json() == unknown.json()
    assert api.get(f"{API}/assignments/{task['id']}/").json() == api.get(
        f"{API}/assignments/999999/").json()
    assert api.post(f"{API}/assignments/{task['id']}/renew/").status_code == 404
    assert api.post(f"{API}/assignments/999999/renew/").status_code == 404
    assert not Ranking.objects.exists()


def test_demonstrations_and_dialogues_by_api(project):
    make_prompt(project, "Explain zip()")
    writer = make_user()
    api = client_for(writer)
    lease = api.post(f"{API}/tasks/next/", {"kind": "demonstration"}, format="json").json()
    assert lease["kind"] == "demonstration" and lease["completions"] == []
    url = f"{API}/assignments/{lease['id']}/demonstration/"
    response = api.post(url, {"reply": "It pairs items.", "client_token": "abc"}, format="json")
    assert response.status_code == 201
    assert response.json()["turns"][-1]["content"] == "It pairs items."
    response = api.post(f"{API}/dialogues/", {
        "project": "api-proj", "client_token": "dlg",
        "turns": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
    }, format="json")
    assert response.status_code == 201 and response.json()["is_dialogue"]
    assert api.post(f"{API}/dialogues/", {"project": "api-proj", "client_token": "d2",
                    "turns": [{"role": "user", "content": "hi"}]},
                    format="json").status_code == 400
    assert Demonstration.objects.count() == 2
    assert api.post(f"{API}/assignments/{lease['id']}/renew/").status_code == 409


def test_staff_import_export_and_push_tasks(project):
    staff = client_for(make_user(is_staff=True))
    labeler_api = client_for(make_user())
    content = "\n".join(json.dumps({"prompt": f"P{i}", "response": f"R{i}"}) for i in range(3))
    url = f"{API}/projects/api-proj/import/"
    assert labeler_api.post(url, {"content": content}, format="json").status_code == 403
    response = staff.post(url, {"content": content, "format": "jsonl"}, format="json")
    assert response.status_code == 201 and response.json()["created"] == 3
    bad = staff.post(url, {"content": content + "\n{oops", "format": "jsonl"}, format="json")
    assert bad.status_code == 400 and bad.json()["lines"][0]["line"] == 4
    csv_file = ("prompts.csv", b"prompt,response\nCSV one,yes\n", "text/csv")
    from django.core.files.uploadedfile import SimpleUploadedFile

    upload = staff.post(url, {"file": SimpleUploadedFile(*csv_file)}, format="multipart")
    assert upload.status_code == 201 and upload.json()["created"] == 1
    response = staff.get(f"{API}/projects/api-proj/export/?kind=sft")
    assert response.status_code == 200
    snapshot = response["X-Snapshot-Id"]
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert len(lines) == 4 and json.loads(lines[0])["messages"][0]["role"] == "user"
    again = staff.get(f"{API}/projects/api-proj/export/", {"kind": "sft", "snapshot": snapshot})
    assert b"".join(again.streaming_content).decode().splitlines() == lines
    assert staff.get(f"{API}/projects/api-proj/export/?kind=nope").status_code == 400
    assert staff.get(f"{API}/projects/api-proj/export/?as_of=yesterday").status_code == 400
    for as_of in ("2999-01-01T00:00Z", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00+01:00",
                  "0001-01-01T00:00Z", "2025-02-30T00:00Z"):
        for endpoint in ("export", "agreement"):
            answer = staff.get(f"{API}/projects/api-proj/{endpoint}/", {"as_of": as_of})
            assert answer.status_code == 400, (endpoint, as_of)
        future = staff.post(f"{API}/projects/api-proj/snapshots/?as_of={as_of}")
        assert future.status_code == 400 and "as_of" in future.json()["error"]
    assert not ExportSnapshot.objects.exists()
    assert labeler_api.get(f"{API}/projects/api-proj/export/").status_code == 403
    recorded = staff.post(f"{API}/projects/api-proj/snapshots/")
    assert recorded.status_code == 201 and recorded.json()["counts"]["sft"] == 4

    prompt = Prompt.objects.get(text="P0")
    push = {"batch_key": "round-2", "tasks": [{"prompt_id": prompt.pk,
                                               "completions": completions(4)}]}
    pushed = staff.post(f"{API}/projects/api-proj/ranking-tasks/", push, format="json")
    assert pushed.status_code == 201
    assert staff.post(f"{API}/projects/api-proj/ranking-tasks/", push, format="json").json() == (
        pushed.json())
    push["tasks"][0]["completions"] = completions(3)
    push["batch_key"] = "round-3"
    short = staff.post(f"{API}/projects/api-proj/ranking-tasks/", push, format="json")
    assert short.status_code == 400 and "exactly 4" in short.json()["error"]
    assert RankingTask.objects.count() == 3
    assert staff.get(f"{API}/projects/nope/export/").status_code == 404
    assert staff.get(f"{API}/projects/api-proj/agreement/").json()["tasks_ranked"] == 0


def test_session_auth_needs_csrf(project):
    from django.test import Client

    user = make_user()
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.post(f"{API}/tasks/next/", {}, content_type="application/json")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
