"""Marking evaluation prompts: the import option (a line's flag or a random share), the admin
action, the share at project setup; held-out prompts are never asked to be demonstrated."""
import json

import pytest
from django.core.management import call_command
from labeling_factories import make_project, make_prompt, make_user

from labeling.errors import Invalid
from labeling.importers import prompts_import
from labeling.models import Prompt
from labeling.services.evaluation_prompts import prompts_mark_evaluation
from labeling.services.queue import demonstration_claim_next

pytestmark = pytest.mark.django_db


def _jsonl(n, **extra):
    return "\n".join(json.dumps({"prompt": f"Question {i}?", **extra}) for i in range(n))


def test_import_holds_out_flagged_lines_and_a_seeded_share():
    project = make_project()
    report = prompts_import(project=project, content=_jsonl(40), format="jsonl",
                            evaluation_share=0.25)  # fmt: skip
    assert report.evaluation == 10
    assert Prompt.objects.filter(project=project, is_evaluation=True).count() == 10
    flagged = prompts_import(project=project, format="jsonl",
                             content=json.dumps({"prompt": "Held", "evaluation": True}))
    assert flagged.evaluation == 1 and Prompt.objects.get(text__contains="Held").is_evaluation
    again = prompts_import(project=project, content=_jsonl(40), format="jsonl",
                           evaluation_share=0.25)  # fmt: skip
    assert again.created == 0 and again.evaluation == 0  # a re-import changes nothing


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_a_share_outside_0_1_is_refused_and_nothing_is_imported(share):
    project = make_project()
    with pytest.raises(Invalid, match="fraction"):
        prompts_import(project=project, content=_jsonl(3), format="jsonl", evaluation_share=share)
    assert not Prompt.objects.filter(project=project).exists()


def test_a_bad_evaluation_value_is_a_line_error():
    project = make_project()
    with pytest.raises(Invalid):
        prompts_import(project=project, format="jsonl",
                       content=json.dumps({"prompt": "x", "evaluation": "maybe"}))
    assert not Prompt.objects.exists()


def test_the_demo_project_holds_out_a_share_at_setup():
    call_command("load_demo_project", author="demo", ranking_tasks=5)
    held = Prompt.objects.filter(project__slug="python-stdlib", is_evaluation=True)
    assert held.count() == 16  # 5% of the 320 answered prompts
    assert not held.filter(ranking_tasks__isnull=False).exists()
    assert not held.filter(demonstrations__isnull=True).exists()  # open prompts stay writable


def test_evaluation_prompts_are_never_handed_out_to_demonstrate():
    project = make_project()
    prompt = make_prompt(project)
    prompts_mark_evaluation(project=project, prompt_ids=[prompt.pk])
    assert demonstration_claim_next(labeler=make_user(), project=project) is None


def test_the_admin_action_marks_and_unmarks(client):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    project = make_project()
    prompts = [make_prompt(project) for _ in range(3)]
    url = "/admin/labeling/prompt/"
    client.post(url, {"action": "hold_out_for_evaluation",
                      "_selected_action": [prompts[0].pk, prompts[1].pk]})
    assert set(Prompt.objects.filter(is_evaluation=True).values_list("pk", flat=True)) == {
        prompts[0].pk, prompts[1].pk}
    client.post(url, {"action": "return_to_training", "_selected_action": [prompts[0].pk]})
    assert list(Prompt.objects.filter(is_evaluation=True)) == [prompts[1]]
    assert "is_evaluation" in client.get(url + "?is_evaluation__exact=1").content.decode()


def test_either_ids_or_a_share():
    with pytest.raises(Invalid):
        prompts_mark_evaluation(project=make_project())
