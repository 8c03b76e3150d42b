"""The comparison page and API: the two replies side by side with nothing that names a model
(not in the HTML, not in the JSON) until the vote is in; the plain form stores the verdict, the
scores and labels; refusals are 4xx with the form again; the queue offers comparisons."""
import json

import pytest
from comparison_factories import VERSIONS, evaluation_prompts, make_comparison
from labeler_pages import XSS
from labeling_factories import make_project, make_user
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labeling.models import Vote
from labeling.services.comparisons import comparison_batch_create, comparison_replies_add
from labeling.services.queue import comparison_claim_next

pytestmark = pytest.mark.django_db
API = "/api/labeling"
NAMES = list(VERSIONS.values())


@pytest.fixture
def project():
    project = make_project(name="Eval", slug="eval", guidelines="Prefer the helpful one.")
    make_comparison(project, prompts=1)
    return project


def _hidden(text: str) -> None:
    """No model name, version id key or sampling setting of the replies in `text`."""
    for secret in [*NAMES, "model_version", "model_label", "version_a", "version_b", "seed"]:
        assert secret not in text, secret


@pytest.mark.urls("labeling_urls")
def test_the_page_shows_two_replies_and_never_a_model(client, project):
    labeler = make_user()
    client.force_login(labeler)
    lease = comparison_claim_next(labeler=labeler, project=project)
    page = client.get(f"/label/compare/{lease.pk}/").content.decode()
    task = lease.comparison
    a, b = page.index('id="reply-a"'), page.index('id="reply-b"')
    assert a < page.index(task.completion_a.text.replace("<", "&lt;")) < b
    assert b < page.index(task.completion_b.text.replace("<", "&lt;"))
    _hidden(page)
    for key in ("<kbd>A</kbd>", "<kbd>B</kbd>", "<kbd>T</kbd>", "<kbd>X</kbd>", "Ctrl</kbd>"):
        assert key in page
    assert "<script>" not in page.split("<body")[1] and " onclick=" not in page  # CSP-friendly
    assert "Prefer the helpful one." in page


@pytest.mark.urls("labeling_urls")
def test_model_text_is_escaped(client):
    project = make_project(slug="xss")
    prompt = evaluation_prompts(project, 1)[0]
    batch = comparison_batch_create(project=project, versions=VERSIONS, request_token="x")
    for version_id in VERSIONS:
        comparison_replies_add(batch_id=batch.pk, version_id=version_id,
                               replies=[(prompt.pk, XSS, {})])
    labeler = make_user()
    client.force_login(labeler)
    lease = comparison_claim_next(labeler=labeler, project=project)
    page = client.get(f"/label/compare/{lease.pk}/").content.decode()
    assert XSS not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page


@pytest.mark.urls("labeling_urls")
def test_the_plain_form_stores_a_vote_and_then_reveals_the_models(client, project):
    labeler = make_user()
    client.force_login(labeler)
    lease = comparison_claim_next(labeler=labeler, project=project)
    response = client.post(f"/label/compare/{lease.pk}/submit/", {
        "outcome": "tie", "likert_a": "5", "likert_b": "", "flags_b": ["fails_instruction"],
        "comment": "close", "opened_at": "1",
    }, follow=True)  # fmt: skip
    vote = Vote.objects.get()
    assert (vote.outcome, vote.likert_a, vote.likert_b) == ("tie", 5, None)
    assert vote.flags == {"b": ["fails_instruction"]} and vote.time_spent_ms > 0
    shown = response.content.decode()
    assert response.redirect_chain[-1][0] == "/label/?next=comparison%3Aeval"
    assert f"Reply A was written by {vote.completion_a.model_label}" in shown


@pytest.mark.urls("labeling_urls")
def test_a_missing_verdict_is_a_400_with_the_form_kept(client, project):
    labeler = make_user()
    client.force_login(labeler)
    lease = comparison_claim_next(labeler=labeler, project=project)
    response = client.post(f"/label/compare/{lease.pk}/submit/",
                           {"likert_a": "3", "comment": "keep me"})
    page = response.content.decode()
    assert response.status_code == 400
    assert "Say which reply is better" in page and "keep me" in page
    assert '<option value="3" selected>' in page
    _hidden(page)
    assert not Vote.objects.exists()


@pytest.mark.urls("labeling_urls")
def test_another_labelers_comparison_is_not_found(client, project):
    lease = comparison_claim_next(labeler=make_user(), project=project)
    client.force_login(make_user())
    assert client.get(f"/label/compare/{lease.pk}/").status_code == 404
    assert client.post(f"/label/compare/{lease.pk}/submit/", {"outcome": "a"}).status_code == 404
    assert not Vote.objects.exists()


@pytest.mark.urls("labeling_urls")
def test_the_queue_offers_comparisons_only_where_some_wait(client, project):
    make_project(name="Quiet", slug="quiet")
    client.force_login(make_user())
    page = client.get("/label/").content.decode()
    assert page.count("Compare replies") == 1
    response = client.post("/label/compare/next/", {"project": "eval"})
    assert response.status_code == 302 and response.url.startswith("/label/compare/")
    assert client.post("/label/compare/next/", {"project": "quiet"}).url == "/label/"


# ----------------------------------------------------------------------------------- API


def _api(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.mark.urls("labeling_api_urls")
def test_the_api_serves_sides_without_models_and_reveals_them_after_the_vote(project):
    api = _api(make_user())
    lease = api.post(f"{API}/tasks/next/", {"kind": "comparison", "project": "eval"},
                     format="json")  # fmt: skip
    body = lease.json()
    assert body["kind"] == "comparison" and [c["side"] for c in body["completions"]] == ["a", "b"]
    _hidden(json.dumps(body))
    _hidden(json.dumps(api.get(f"{API}/assignments/{body['id']}/").json()))
    vote = api.post(f"{API}/assignments/{body['id']}/vote/",
                    {"outcome": "a", "likert_a": 7, "flags": {"b": ["harmful"]}}, format="json")
    assert vote.status_code == 201
    revealed = vote.json()["revealed"]
    assert {revealed["a"]["name"], revealed["b"]["name"]} == set(NAMES[:2])
    again = api.post(f"{API}/assignments/{body['id']}/vote/", {"outcome": "b"}, format="json")
    assert again.json()["id"] == vote.json()["id"] and Vote.objects.count() == 1


@pytest.mark.urls("labeling_api_urls")
def test_the_api_refuses_a_bad_vote_with_its_message(project):
    api = _api(make_user())
    lease = api.post(f"{API}/tasks/next/", {"kind": "comparison"}, format="json").json()
    response = api.post(f"{API}/assignments/{lease['id']}/vote/",
                        {"outcome": "a", "likert_b": 9}, format="json")
    assert response.status_code == 400 and "1 to 7" in response.json()["error"]
    assert not Vote.objects.exists()
