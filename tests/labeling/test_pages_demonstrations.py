"""Writing demonstrations and dialogues through Django's test client, without JavaScript,
and starting a dialogue from a model suggestion."""
import re

import pytest
from labeling_factories import make_project, make_prompt, make_tasks

from labeling.models import Assignment, Demonstration
from labeling.services.queue import demonstration_claim_next

pytestmark = pytest.mark.urls("labeling_urls")


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


def test_a_dialogue_over_the_turn_limit_is_refused_not_cut_short(lena_client, project):
    turns = [f"turn {i}" for i in range(500)]
    response = lena_client.post("/label/dialogue/help/submit/", {
        "client_token": "tok-long", "turn": turns, "action": "submit",
    })
    assert response.status_code == 400
    assert "at most 40 turns" in response.content.decode()
    assert "turn 499" in response.content.decode()  # nothing typed is dropped
    assert not Demonstration.objects.exists()


def test_a_closed_project_cannot_take_dialogues(lena_client, project):
    project.is_active = False
    project.save(update_fields=["is_active"])
    assert lena_client.get("/label/dialogue/help/").status_code == 409
    assert lena_client.get("/label/dialogue/nope/").status_code == 404


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
