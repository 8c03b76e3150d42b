"""The flow between tasks: straight on to the next task after a submit or a skip, the progress
line, "already submitted" after going back, guidelines per kind of task, the writing preview,
and styled 403/404 pages with a way back."""
from labeler_pages import XSS, claim, rank_post
from labeling_factories import make_project, make_prompt, make_tasks

from labeling.services.projects import project_update
from labeling.services.queue import demonstration_claim_next


def test_after_a_submit_the_next_task_of_the_kind_opens(lena_client, labeler, project):
    make_tasks(project, 2)
    first = claim(labeler, project)
    page = lena_client.get(f"/label/rank/{first.pk}/").content.decode()
    assert "This batch: <strong>0</strong> of 2 ranked" in page
    assert "you: <strong>0</strong> today" in page and "Back to your queue" in page
    _, data = rank_post(first, [1, 2, 3, 4])
    response = lena_client.post(f"/label/rank/{first.pk}/submit/", data)
    second = labeler.assignments.exclude(pk=first.pk).get()
    assert response.status_code == 302 and response.url == f"/label/rank/{second.pk}/"
    page = lena_client.get(response.url).content.decode()
    assert "Ranking saved. Thank you! Here is the next one." in page
    assert "This batch: <strong>1</strong> of 2 ranked" in page
    # Back to the first one: it says it was submitted, no live form.
    back = lena_client.get(f"/label/rank/{first.pk}/")
    assert "You already submitted this task" in back.content.decode()
    assert "no-store" in back["Cache-Control"]
    _, data = rank_post(second, [1, 2, 3, 4])
    response = lena_client.post(f"/label/rank/{second.pk}/submit/", data)
    assert response.url == "/label/?next=ranking%3Ahelp"  # none left: the queue
    assert "the last one waiting for you" in lena_client.get(response.url).content.decode()


def test_a_skip_goes_on_to_the_next_prompt(lena_client, labeler, project):
    make_prompt(project)
    make_prompt(project)
    first = demonstration_claim_next(labeler=labeler, project=project)
    response = lena_client.post(f"/label/tasks/{first.pk}/skip/", {"reason": "unclear"})
    second = labeler.assignments.exclude(pk=first.pk).get()
    assert response.url == f"/label/write/{second.pk}/"


def test_each_kind_of_task_shows_its_own_guidelines(lena_client, labeler, project):
    project_update(project=project, ranking_guidelines="Rank **carefully**.",
                   writing_guidelines="Write *briefly*.", dialogue_guidelines="Play both sides.")
    make_tasks(project, 1)
    ranking = claim(labeler, project).pk
    writing = demonstration_claim_next(labeler=labeler, project=project).pk
    rank_page = lena_client.get(f"/label/rank/{ranking}/").content.decode()
    write_page = lena_client.get(f"/label/write/{writing}/").content.decode()
    dialogue_page = lena_client.get("/label/dialogue/help/").content.decode()
    assert "Rank <strong>carefully</strong>" in rank_page and "briefly" not in rank_page
    assert "Write <em>briefly</em>" in write_page and "carefully" not in write_page
    assert "Play both sides" in dialogue_page and "carefully" not in dialogue_page
    for page in (rank_page, write_page, dialogue_page):
        assert "Be kind." in page  # the general guidelines, everywhere


def test_the_writing_preview_renders_markdown_safely(lena_client):
    reply = f"**Hi** {XSS}\n```python\nx = 1\n```"
    response = lena_client.post("/label/preview/", {"reply": reply})
    page = response.content.decode()
    assert "<strong>Hi</strong>" in page and '<span class="n">x</span>' in page
    assert "<script>" not in page and "&lt;script&gt;" in page
    turns = lena_client.post("/label/preview/", {"turn": ["Q?", "A."]}).content.decode()
    assert "User (preview)" in turns and "Assistant (preview)" in turns


def test_a_labeler_on_a_staff_page_gets_a_styled_403_with_a_way_back(lena_client, db):
    make_project(slug="other")
    response = lena_client.get("/training/")
    page = response.content.decode()
    assert response.status_code == 403
    assert "Training is for staff." in page and "Back to the start page" in page
    assert 'class="topbar"' in page  # the site's page, not a bare "403 Forbidden"
    missing = lena_client.get("/no-such-page/")
    assert missing.status_code == 404 and "Back to the start page" in missing.content.decode()
