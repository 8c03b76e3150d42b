"""The labeler UI through Django's test client: login, ownership, CSRF, escaping, the no-JS
forms, and services' refusals shown as 4xx pages with their message."""
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from labeling_factories import make_project, make_prompt, make_tasks, make_user

from labeling.models import Assignment, Demonstration, Ranking, Skip
from labeling.selectors import completions_for
from labeling.services.queue import demonstration_claim_next, ranking_claim_next

pytestmark = pytest.mark.urls("labeling_urls")

XSS = "<script>alert('x')</script>"


@pytest.fixture
def labeler(db):
    """As the shared fixture, without hashing a password (0.4 s): these tests force_login."""
    return make_user("lena")


@pytest.fixture
def project(db):
    return make_project(name="Help", slug="help", k=4, guidelines="Be kind.")


@pytest.fixture
def task(project):
    return make_tasks(project, 1)[0]


@pytest.fixture
def lena_client(client, labeler):
    client.force_login(labeler)
    return client


def claim(labeler, project):
    return ranking_claim_next(labeler=labeler, project=project)


def rank_post(assignment, ranks, **extra):
    """The no-JS form: one rank select per completion (equal numbers are a tie)."""
    ids = [c.pk for c in completions_for(assignment=assignment)]
    data = {f"rank_{cid}": str(r) for cid, r in zip(ids, ranks, strict=True)}
    return ids, {**data, **extra}


def expire(assignment):
    Assignment.objects.filter(pk=assignment.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


# ------------------------------------------------------------------------ login, the queue


@pytest.mark.parametrize("method,url", [
    ("get", "/label/"), ("get", "/label/queue/"), ("post", "/label/rank/next/"),
    ("get", "/label/rank/1/"), ("post", "/label/rank/1/submit/"), ("get", "/label/write/1/"),
    ("get", "/label/dialogue/help/"), ("post", "/label/tasks/1/renew/"),
])
def test_every_page_needs_a_login(client, project, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response.url.startswith("/accounts/login/")


def test_home_shows_the_queue_and_todays_counts(lena_client, labeler, project, task):
    page = lena_client.get("/label/").content.decode()
    assert "Help" in page
    assert re.search(r'class="count">1</span>\s*<span>ranking task waiting', page)
    assert "Today: <strong>0</strong> rankings" in page
    assignment = claim(labeler, project)
    _, data = rank_post(assignment, [1, 2, 3, 4])
    lena_client.post(f"/label/rank/{assignment.pk}/submit/", data)
    page = lena_client.get("/label/?next=ranking:help").content.decode()
    assert re.search(r'class="count zero">0</span>\s*<span>ranking tasks waiting', page)
    assert "Today: <strong>1</strong> ranking," in page


def test_the_dashboard_loads_the_queue(lena_client, project):
    page = lena_client.get("/").content.decode()
    assert 'hx-get="/label/queue/"' in page
    fragment = lena_client.get("/label/queue/", headers={"HX-Request": "true"}).content.decode()
    assert 'id="queue"' in fragment and "<html" not in fragment


def test_next_claims_a_task_and_redirects_to_it(lena_client, labeler, project, task):
    response = lena_client.post("/label/rank/next/", {"project": "help"})
    assignment = Assignment.objects.get(labeler=labeler)
    assert response.status_code == 302
    assert response.url == f"/label/rank/{assignment.pk}/"


def test_next_with_nothing_waiting_says_so(lena_client, project):
    response = lena_client.post("/label/rank/next/", {"project": "help"}, follow=True)
    assert "No ranking task is waiting for you in Help" in response.content.decode()


def test_next_in_an_unknown_project_is_a_404(lena_client):
    response = lena_client.post("/label/rank/next/", {"project": "nope"})
    assert response.status_code == 404
    assert "No project" in response.content.decode()


# --------------------------------------------------------------------------------- ranking


def test_ranking_page_shows_completions_shuffled_with_the_model_hidden(
    lena_client, labeler, project, task
):
    assignment = claim(labeler, project)
    page = lena_client.get(f"/label/rank/{assignment.pk}/").content.decode()
    shown = [int(i) for i in re.findall(r'class="completion"[^>]*data-id="(\d+)"', page)]
    assert shown == [c.pk for c in completions_for(assignment=assignment)]
    assert "sft-1" not in page  # the model label
    assert "Be kind." in page and "<details" in page  # guidelines, collapsible
    assert f'hx-post="/label/tasks/{assignment.pk}/renew/"' in page
    assert 'hx-trigger="every 60s' in page
    for key in ("Ctrl</kbd>+<kbd>Enter", "<kbd>T</kbd>", "<kbd>↑</kbd>"):
        assert key in page


def test_ranking_without_javascript_stores_ties_flags_and_comment(
    lena_client, labeler, project, task
):
    assignment = claim(labeler, project)
    ids, data = rank_post(assignment, [2, 1, 2, 4], comment=" meh ", all_bad="on",
                          time_spent_ms="", opened_at="1")
    data[f"flags_{ids[3]}"] = ["harmful", "private"]
    response = lena_client.post(f"/label/rank/{assignment.pk}/submit/", data)
    assert response.status_code == 302
    assert response.url == "/label/?next=ranking%3Ahelp"
    ranking = Ranking.objects.get()
    assert ranking.order == [[ids[1]], [ids[0], ids[2]], [ids[3]]]
    assert ranking.flags == {str(ids[3]): ["harmful", "private"]}
    assert ranking.all_bad and ranking.comment == "meh"
    assert ranking.time_spent_ms > 0  # from opened_at, without JavaScript


def test_a_double_submit_stores_one_ranking(lena_client, labeler, project, task):
    assignment = claim(labeler, project)
    _, data = rank_post(assignment, [1, 2, 3, 4], time_spent_ms="1234")
    first = lena_client.post(f"/label/rank/{assignment.pk}/submit/", data)
    second = lena_client.post(f"/label/rank/{assignment.pk}/submit/", data)
    assert first.status_code == second.status_code == 302
    assert Ranking.objects.count() == 1
    assert Ranking.objects.get().time_spent_ms == 1234


def test_a_missing_rank_is_a_400_with_the_form_again(lena_client, labeler, project, task):
    assignment = claim(labeler, project)
    ids, data = rank_post(assignment, [1, 2, 3, 4], comment="keep me")
    del data[f"rank_{ids[2]}"]
    response = lena_client.post(f"/label/rank/{assignment.pk}/submit/", data)
    page = response.content.decode()
    assert response.status_code == 400
    assert "Give this reply a rank." in page
    assert "keep me" in page and "data-server-values" in page
    assert not Ranking.objects.exists()


def test_a_foreign_completion_id_is_refused(lena_client, labeler, project, task):
    other_task = make_tasks(project, 1)[0]
    assignment = claim(labeler, project)
    _, data = rank_post(assignment, [1, 2, 3, 4])
    foreign = other_task.items.first().completion_id
    data[f"rank_{foreign}"] = "1"  # ignored: not a field of this task's form
    response = lena_client.post(f"/label/rank/{assignment.pk}/submit/", data)
    assert response.status_code == 302
    assert foreign not in {i for g in Ranking.objects.get().order for i in g}


def test_an_expired_lease_is_refused_with_its_message(lena_client, labeler, project, task):
    assignment = claim(labeler, project)
    _, data = rank_post(assignment, [1, 2, 3, 4])
    expire(assignment)
    response = lena_client.post(f"/label/rank/{assignment.pk}/submit/", data)
    assert response.status_code == 409
    assert "ran out" in response.content.decode()
    assert not Ranking.objects.exists()


def test_an_expired_lease_page_says_so_and_can_be_continued(lena_client, labeler, project, task):
    assignment = claim(labeler, project)
    expire(assignment)
    page = lena_client.get(f"/label/rank/{assignment.pk}/").content.decode()
    assert "Your time on this task ran out." in page
    assert f'action="/label/tasks/{assignment.pk}/renew/"' in page
    response = lena_client.post(f"/label/tasks/{assignment.pk}/renew/")
    assert response.status_code == 302 and response.url == f"/label/rank/{assignment.pk}/"
    assignment.refresh_from_db()
    assert assignment.is_live()


def test_a_submitted_task_page_says_so(lena_client, labeler, project, task):
    assignment = claim(labeler, project)
    _, data = rank_post(assignment, [1, 2, 3, 4])
    lena_client.post(f"/label/rank/{assignment.pk}/submit/", data)
    page = lena_client.get(f"/label/rank/{assignment.pk}/").content.decode()
    assert "You already submitted this task." in page


def test_renew_by_htmx_returns_the_lease_fragment(lena_client, labeler, project, task):
    assignment = claim(labeler, project)
    response = lena_client.post(f"/label/tasks/{assignment.pk}/renew/",
                                headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert 'id="lease"' in response.content.decode()
    assert "<html" not in response.content.decode()


def test_renew_of_a_lease_taken_by_someone_else_is_a_409_fragment(
    lena_client, labeler, project, task
):
    assignment = claim(labeler, project)
    expire(assignment)
    assert claim(make_user("otto"), project).task_id == task.pk
    response = lena_client.post(f"/label/tasks/{assignment.pk}/renew/",
                                headers={"HX-Request": "true"})
    page = response.content.decode()
    assert response.status_code == 409
    assert "went to someone else" in page and "hx-trigger" not in page


# ------------------------------------------------------------------------ own tasks only


def test_another_labelers_task_is_a_404_everywhere(client, labeler, project, task):
    make_prompt(project)
    otto = make_user("otto")
    ranking = claim(otto, project)
    writing = demonstration_claim_next(labeler=otto, project=project)
    client.force_login(labeler)
    _, data = rank_post(ranking, [1, 2, 3, 4])
    for method, url, payload in [
        ("get", f"/label/rank/{ranking.pk}/", None),
        ("post", f"/label/rank/{ranking.pk}/submit/", data),
        ("get", f"/label/write/{writing.pk}/", None),
        ("post", f"/label/write/{writing.pk}/submit/", {"reply": "x", "client_token": "t1"}),
        ("post", f"/label/tasks/{ranking.pk}/renew/", None),
        ("post", f"/label/tasks/{ranking.pk}/skip/", {"reason": "mine now"}),
    ]:
        response = getattr(client, method)(url, payload)
        assert response.status_code == 404, url
        assert "No such task" in response.content.decode()
    assert not Ranking.objects.exists() and not Demonstration.objects.exists()
    assert not Skip.objects.exists()


def test_a_task_of_the_other_kind_redirects_to_its_page(lena_client, labeler, project, task):
    assignment = claim(labeler, project)
    response = lena_client.get(f"/label/write/{assignment.pk}/")
    assert response.status_code == 302 and response.url == f"/label/rank/{assignment.pk}/"


# --------------------------------------------------------------------------------- skip


def test_skip_with_a_reason_and_the_task_never_comes_back(lena_client, labeler, project, task):
    assignment = claim(labeler, project)
    response = lena_client.post(f"/label/tasks/{assignment.pk}/skip/", {"reason": "Unclear"})
    assert response.status_code == 302
    assert Skip.objects.get().reason == "Unclear"
    lena_client.post("/label/rank/next/", {"project": "help"})
    assert Assignment.objects.filter(labeler=labeler).count() == 1


def test_skip_without_a_reason_is_a_400(lena_client, labeler, project, task):
    assignment = claim(labeler, project)
    response = lena_client.post(f"/label/tasks/{assignment.pk}/skip/", {"reason": ""})
    assert response.status_code == 400
    assert "why you skip" in response.content.decode()
    assert not Skip.objects.exists()


# ------------------------------------------------------------------------ demonstrations


def test_write_a_demonstration_without_javascript(lena_client, labeler, project):
    prompt = make_prompt(project, "Explain zip().")
    response = lena_client.post("/label/write/next/", {"project": "help"})
    assignment = Assignment.objects.get(labeler=labeler)
    assert response.url == f"/label/write/{assignment.pk}/"
    page = lena_client.get(response.url).content.decode()
    assert "Explain zip()." in page
    token = re.search(r'name="client_token" value="([0-9a-f]+)"', page).group(1)
    data = {"reply": "zip pairs items.\n\nExample: ...", "client_token": token, "opened_at": "1"}
    first = lena_client.post(f"/label/write/{assignment.pk}/submit/", data)
    second = lena_client.post(f"/label/write/{assignment.pk}/submit/", data)
    assert first.status_code == second.status_code == 302
    demo = Demonstration.objects.get()
    assert demo.prompt == prompt and demo.author == labeler
    assert demo.turns[-1] == {"role": "assistant", "content": "zip pairs items.\n\nExample: ..."}
    assert demo.time_spent_ms > 0


def test_an_empty_demonstration_is_a_400(lena_client, labeler, project):
    make_prompt(project)
    assignment = demonstration_claim_next(labeler=labeler, project=project)
    response = lena_client.post(f"/label/write/{assignment.pk}/submit/",
                                {"reply": "   ", "client_token": "tok-1"})
    assert response.status_code == 400
    assert "Write the reply" in response.content.decode()
    assert not Demonstration.objects.exists()


def test_an_oversized_demonstration_is_a_400(lena_client, labeler, project):
    make_prompt(project)
    assignment = demonstration_claim_next(labeler=labeler, project=project)
    response = lena_client.post(f"/label/write/{assignment.pk}/submit/",
                                {"reply": "x" * 20_001, "client_token": "tok-1"})
    assert response.status_code == 400
    assert not Demonstration.objects.exists()


def test_write_a_dialogue_adding_turns_without_javascript(lena_client, labeler, project):
    url = "/label/dialogue/help/submit/"
    page = lena_client.get("/label/dialogue/help/").content.decode()
    token = re.search(r'name="client_token" value="([0-9a-f]+)"', page).group(1)
    base = {"client_token": token, "turn": ["Hi", "Hello! How can I help?"]}
    added = lena_client.post(url, {**base, "action": "add"}).content.decode()
    assert added.count('name="turn"') == 3 + 1  # three turns and the JS template
    assert not Demonstration.objects.exists()
    turns = ["Hi", "Hello! How can I help?", "Sort a dict by value.", "sorted(d.items(), ...)"]
    response = lena_client.post(url, {"client_token": token, "turn": turns, "action": "submit"})
    assert response.status_code == 302
    demo = Demonstration.objects.get()
    assert demo.is_dialogue and demo.author == labeler
    assert [t["content"] for t in demo.turns] == turns
    assert demo.prompt.author == labeler
    lena_client.post(url, {"client_token": token, "turn": turns, "action": "submit"})
    assert Demonstration.objects.count() == 1  # the same token: one dialogue


def test_a_dialogue_ending_with_a_user_turn_is_refused(lena_client, project):
    response = lena_client.post("/label/dialogue/help/submit/", {
        "client_token": "tok-2", "turn": ["Hi", "Hello", "Bye"], "action": "submit",
    })
    assert response.status_code == 400
    assert "must end with a" in response.content.decode()
    assert "Bye" in response.content.decode()  # what was typed is shown again
    assert not Demonstration.objects.exists()


def test_a_closed_project_cannot_take_dialogues(lena_client, project):
    project.is_active = False
    project.save(update_fields=["is_active"])
    assert lena_client.get("/label/dialogue/help/").status_code == 409
    assert lena_client.get("/label/dialogue/nope/").status_code == 404


# ------------------------------------------------------------------------- CSRF and XSS


def test_csrf_is_enforced_on_every_post(labeler, project, task):
    client = Client(enforce_csrf_checks=True)
    client.force_login(labeler)
    assert client.post("/label/rank/next/", {"project": "help"}).status_code == 403
    assert not Assignment.objects.exists()
    page = client.get("/label/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post("/label/rank/next/", {"project": "help", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assignment = Assignment.objects.get()
    _, data = rank_post(assignment, [1, 2, 3, 4])
    assert client.post(f"/label/rank/{assignment.pk}/submit/", data).status_code == 403
    assert client.post(f"/label/tasks/{assignment.pk}/renew/",
                       headers={"HX-Request": "true"}).status_code == 403
    assert not Ranking.objects.exists()
    page = client.get(f"/label/rank/{assignment.pk}/").content.decode()
    assert "hx-headers='{\"X-CSRFToken\": \"" in page  # htmx posts carry the token


def test_user_and_model_text_is_escaped(lena_client, labeler):
    project = make_project(name=f"P {XSS}", slug="xss", guidelines=f"Rules {XSS}")
    prompt = make_prompt(project, f"Prompt {XSS}")
    make_tasks(project, prompts=[prompt])  # completions "Prompt <script>... 0", "... 1", ...
    pages = [lena_client.get("/label/").content.decode()]
    ranking = ranking_claim_next(labeler=labeler, project=project)
    pages.append(lena_client.get(f"/label/rank/{ranking.pk}/").content.decode())
    _, data = rank_post(ranking, [1, 2, 3, 4], comment=f"Comment {XSS}")
    del data[next(iter(data))]  # refused: the page comes back with the comment
    pages.append(lena_client.post(f"/label/rank/{ranking.pk}/submit/", data).content.decode())
    writing = demonstration_claim_next(labeler=labeler, project=project)
    pages.append(lena_client.get(f"/label/write/{writing.pk}/").content.decode())
    pages.append(lena_client.post(f"/label/write/{writing.pk}/submit/",
                                  {"reply": f"Reply {XSS}"}).content.decode())
    pages.append(lena_client.get("/label/dialogue/xss/").content.decode())
    for page in pages:
        assert "<script>alert" not in page
    joined = "".join(pages)
    escaped = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"
    for text in ("P ", "Rules ", "Prompt ", "Comment ", "Reply "):
        assert f"{text}{escaped}" in joined, text
    assert f"Prompt {escaped} 3" in joined  # a completion's text


# -------------------------------------------------------------------------------- staff


def test_stats_are_for_staff_and_show_agreement(client, labeler):
    from labeling.services.rankings import ranking_submit

    project = make_project(name="Pairs", slug="pairs", overlap=2)
    task = make_tasks(project, 1)[0]
    for user, reverse in ((labeler, False), (make_user("otto"), True)):
        lease = ranking_claim_next(labeler=user, project=project)
        ids = [c.pk for c in completions_for(assignment=lease)]
        ids = sorted(ids, reverse=reverse)
        ranking_submit(assignment_id=lease.pk, labeler=user, order=[[i] for i in ids],
                       time_spent_ms=4000)
    assert task.rankings.count() == 2
    client.force_login(labeler)
    assert client.get("/label/stats/pairs/").status_code == 403
    client.force_login(make_user("sam", is_staff=True))
    page = client.get("/label/stats/pairs/").content.decode()
    assert "1 task ranked,\n    1 by more than one labeler" in page
    assert "lena · otto" in page and "-1.00" in page  # opposite orders
    assert re.search(r"<td>lena</td><td>1</td><td>0</td><td>0</td>\s*<td>4 s</td>", page)


# ------------------------------------------------------------------ dialogue suggestions


def test_a_dialogue_can_start_from_a_model_suggestion(lena_client, labeler, project, task):
    from labeling.models import Completion

    # The newest model reply in the project is offered.
    suggestion = Completion.objects.filter(prompt__project=project).latest("created_at", "pk")
    page = lena_client.get("/label/dialogue/help/").content.decode()
    assert f'?suggestion={suggestion.pk}"' in page and "Start from a model suggestion" in page
    page = lena_client.get(f"/label/dialogue/help/?suggestion={suggestion.pk}").content.decode()
    assert "model suggestion" in page and suggestion.text in page
    token = re.search(r'name="client_token" value="([0-9a-f]+)"', page).group(1)
    turns = [suggestion.prompt.turns[0]["content"], "My better answer."]
    response = lena_client.post("/label/dialogue/help/submit/", {
        "client_token": token, "turn": turns, "suggestion": str(suggestion.pk),
        "action": "submit",
    })
    assert response.status_code == 302
    assert Demonstration.objects.get().suggestion == suggestion


def test_a_suggestion_from_another_project_is_not_found(lena_client, project, task):
    other = make_project(name="Elsewhere", slug="elsewhere", k=4)
    foreign = make_tasks(other, 1)[0].completions.first()
    response = lena_client.get(f"/label/dialogue/help/?suggestion={foreign.pk}")
    assert response.status_code == 404
