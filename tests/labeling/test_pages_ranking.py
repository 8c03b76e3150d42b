"""The ranking page through Django's test client: the no-JS form, idempotent submit, refusals
as 4xx pages with their message, lease renewal and expiry, skip."""
import re

import pytest
from labeler_pages import claim, expire, rank_post
from labeling_factories import make_tasks, make_user

from labeling.models import Assignment, Ranking, Skip
from labeling.selectors import completions_for

pytestmark = pytest.mark.urls("labeling_urls")


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
