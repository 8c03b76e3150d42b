"""The labeler UI through Django's test client: login on every page, the queue, ownership,
CSRF on every post, escaping of user and model text, the staff stats page."""
import re

import pytest
from django.test import Client
from labeler_pages import XSS, claim, rank_post
from labeling_factories import make_project, make_prompt, make_tasks, make_user

from labeling.models import Assignment, Demonstration, Ranking, Skip
from labeling.selectors import completions_for
from labeling.services.queue import demonstration_claim_next, ranking_claim_next

pytestmark = pytest.mark.urls("labeling_urls")


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
    # Django escapes the quote as &#x27;, the Markdown renderer leaves it (it is text there).
    escaped = r"&lt;script&gt;alert\((&#x27;|')x(&#x27;|')\)&lt;/script&gt;"
    for text in ("P ", "Rules ", "Prompt ", "Comment ", "Reply "):
        assert re.search(re.escape(text) + escaped, joined), text
    assert re.search("Prompt " + escaped + " 3", joined)  # a completion's text


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
