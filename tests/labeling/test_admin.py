"""The admin: every table listed, searched and filtered; actions and the import upload go
through the services."""
import io
import json
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from labeling_factories import make_project, make_prompt, make_tasks, make_user, order_of

from labeling import importers
from labeling.models import Assignment, ExportSnapshot, Project, Prompt, RankingTask
from labeling.services.demonstrations import demonstration_submit
from labeling.services.queue import assignment_skip, demonstration_claim_next, ranking_claim_next
from labeling.services.rankings import ranking_submit

pytestmark = pytest.mark.django_db
ADMIN = "/admin/labeling/"


@pytest.fixture
def admin_client(client):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def world():
    project = make_project(name="Alpha <b>", overlap=1)
    t1, t2 = make_tasks(project, 2)
    a, b = make_user(), make_user()
    lease = ranking_claim_next(labeler=a)
    ranking_submit(assignment_id=lease.pk, labeler=a, order=order_of(lease.task),
                   flags={str(order_of(lease.task)[0][0]): ["untrue"]})
    make_prompt(project, "Write a haiku")
    demo = demonstration_claim_next(labeler=a)
    demonstration_submit(assignment_id=demo.pk, labeler=a, reply="...", client_token="t")
    skipped = demonstration_claim_next(labeler=b)
    assignment_skip(assignment_id=skipped.pk, labeler=b, reason="no idea")
    ranking_claim_next(labeler=b)
    return project, t1, t2


@pytest.mark.parametrize(
    "model", ["project", "prompt", "completion", "rankingtask", "assignment", "ranking",
              "demonstration", "skip", "exportsnapshot"],
)
def test_every_changelist_and_change_page_renders_with_search_and_filters(
    admin_client, world, model
):
    assert admin_client.get(f"{ADMIN}{model}/").status_code == 200
    assert admin_client.get(f"{ADMIN}{model}/?q=a").status_code == 200
    from django.apps import apps

    obj = apps.get_model("labeling", model).objects.first()
    if obj is not None:
        assert admin_client.get(f"{ADMIN}{model}/{obj.pk}/change/").status_code == 200


def test_labels_are_read_only_and_tasks_cannot_be_added_by_hand(admin_client, world):
    assert admin_client.get(f"{ADMIN}ranking/add/").status_code == 403
    assert admin_client.get(f"{ADMIN}rankingtask/add/").status_code == 403
    assert admin_client.get(f"{ADMIN}prompt/add/").status_code == 403


def test_project_add_and_change_go_through_the_services(admin_client):
    response = admin_client.post(f"{ADMIN}project/add/", {
        "name": "Beta", "slug": "beta", "guidelines": "Be kind", "k": 5, "overlap": 3,
        "lease_seconds": 300, "is_active": "on", "gold_rate": 0.1, "gold_min_accuracy": 0.7,
    })
    assert response.status_code == 302, response.content
    project = Project.objects.get(slug="beta")
    assert (project.k, project.overlap) == (5, 3)
    response = admin_client.post(f"{ADMIN}project/{project.pk}/change/", {
        "name": "Beta", "slug": "beta", "guidelines": "Be kinder", "k": 5, "overlap": 2,
        "lease_seconds": 300, "is_active": "on", "gold_rate": 0.1, "gold_min_accuracy": 0.7,
    })
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.guidelines, project.overlap) == ("Be kinder", 2)
    bad = admin_client.post(f"{ADMIN}project/add/", {
        "name": "Gamma", "slug": "gamma", "k": 12, "overlap": 1, "lease_seconds": 300})
    assert bad.status_code == 200 and not Project.objects.filter(slug="gamma").exists()


def test_prompt_change_sets_demonstrations_needed(admin_client, world):
    prompt = Prompt.objects.get(text="Write a haiku")
    response = admin_client.post(f"{ADMIN}prompt/{prompt.pk}/change/",
                                 {"demonstrations_needed": 3, "duplicate_of": ""})
    assert response.status_code == 302
    prompt.refresh_from_db()
    assert prompt.demonstrations_needed == 3


def test_task_actions_reopen_cancel_and_export(admin_client, world):
    project, t1, t2 = world
    done = RankingTask.objects.get(status="complete")
    open_ = RankingTask.objects.get(status="open")
    admin_client.post(f"{ADMIN}rankingtask/", {"action": "reopen", "_selected_action": [done.pk]})
    done.refresh_from_db()
    assert (done.status, done.rankings_needed) == ("open", 2)
    admin_client.post(f"{ADMIN}rankingtask/", {"action": "cancel", "_selected_action": [open_.pk]})
    open_.refresh_from_db()
    assert open_.status == "cancelled"
    response = admin_client.post(f"{ADMIN}rankingtask/",
                                 {"action": "export_selected", "_selected_action": [done.pk]})
    (line,) = response.content.decode().splitlines()
    assert json.loads(line)["task_id"] == done.pk


def test_release_action_puts_a_leased_task_back(admin_client, world):
    lease = Assignment.objects.get(status="active")
    admin_client.post(f"{ADMIN}assignment/", {"action": "release", "_selected_action": [lease.pk]})
    lease.refresh_from_db()
    assert lease.status == "expired"


def test_export_selected_projects_downloads_a_zip_with_a_snapshot(admin_client, world):
    project, *_ = world
    response = admin_client.post(f"{ADMIN}project/",
                                 {"action": "export_selected", "_selected_action": [project.pk]})
    assert response["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = set(archive.namelist())
    assert {f"{project.slug}/{k}.jsonl" for k in ("sft", "comparisons", "rankings")} <= names
    snapshot_id = archive.read(f"{project.slug}/snapshot.txt").decode().strip()
    assert ExportSnapshot.objects.get().snapshot_id == snapshot_id
    assert len(archive.read(f"{project.slug}/comparisons.jsonl").splitlines()) == 6


def test_labelers_cannot_reach_the_admin(client, world):
    client.force_login(make_user())
    assert client.get(f"{ADMIN}ranking/").status_code == 302


IMPORT = f"{ADMIN}prompt/import/"


def upload(name, text):
    return SimpleUploadedFile(name, text.encode(), content_type="application/octet-stream")


def test_staff_import_a_file_from_the_prompt_list(admin_client):
    project = make_project(name="Imports")
    changelist = admin_client.get(f"{ADMIN}prompt/?project__id__exact={project.pk}")
    assert f'href="{IMPORT}?project={project.pk}"' in changelist.content.decode()
    lines = ('{"prompt": "Who wrote Hamlet?", "response": "Shakespeare."}\n'
             '{"turns": [{"role": "user", "content": "Name a prime"}]}\n')
    response = admin_client.post(
        IMPORT, {"project": project.pk, "demonstrations_needed": 2,
                 "file": upload("prompts.jsonl", lines)}, follow=True)
    hamlet, prime = project.prompts.order_by("id")
    # The list shows exactly what was imported.
    assert response.redirect_chain[-1][0] == f"{ADMIN}prompt/?id__in={hamlet.pk},{prime.pk}"
    assert "Imports: 2 lines: 2 prompts created" in response.content.decode()
    assert "2 prompts" in response.content.decode()
    assert (hamlet.text, hamlet.demonstrations.get().author.username) == (
        "Who wrote Hamlet?", "root")
    assert prime.demonstrations_needed == 2
    admin_client.post(IMPORT, {"project": project.pk, "demonstrations_needed": 1,
                               "file": upload("more.csv", "prompt\nFrom a CSV\n")})
    assert project.prompts.filter(text="From a CSV").exists()


def test_a_bad_file_lists_every_bad_line_and_imports_nothing(admin_client):
    project = make_project()
    lines = ('{"prompt": "Fine"}\nnot json\n{"prompt": ""}\n{"text": "Hi"}\n'
             '{"prompt": "unterminated\n')
    response = admin_client.post(IMPORT, {"project": project.pk, "demonstrations_needed": 1,
                                          "file": upload("bad.jsonl", lines)})
    assert response.status_code == 400
    page = response.content.decode()
    assert "4 line(s) have errors; nothing was imported." in page
    assert "<td>2</td><td>Not JSON" in page and "<td>3</td>" in page
    assert "<td>4</td><td>A line needs &quot;prompt&quot;, &quot;turns&quot; or " in page
    assert "this one has &quot;text&quot;" in page
    assert "Unterminated string starting at column 12." in page  # not "at at column"
    assert not Prompt.objects.exists()


def test_an_oversized_file_is_refused_with_its_limit(admin_client, monkeypatch):
    monkeypatch.setattr(importers, "MAX_BYTES", 10)
    response = admin_client.post(IMPORT, {"project": make_project().pk, "demonstrations_needed": 1,
                                          "file": upload("big.jsonl", '{"prompt": "Too long"}')})
    assert response.status_code == 400
    assert "split it into smaller imports" in response.content.decode()
    assert not Prompt.objects.exists()


def test_only_staff_allowed_to_add_prompts_reach_the_import_page(client):
    project = make_project()
    post = {"project": project.pk, "demonstrations_needed": 1,
            "file": upload("p.jsonl", '{"prompt": "Sneaky"}')}
    client.force_login(make_user())
    assert client.get(IMPORT).status_code == 302  # to the admin login
    assert client.post(IMPORT, post).status_code == 302
    client.force_login(make_user(is_staff=True))
    assert client.get(IMPORT).status_code == 403
    post["file"].seek(0)
    assert client.post(IMPORT, post).status_code == 403
    assert not Prompt.objects.exists()


def test_the_import_form_needs_its_csrf_token():
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    project = make_project()
    post = {"project": project.pk, "demonstrations_needed": 1,
            "file": upload("p.jsonl", '{"prompt": "Forged?"}')}
    assert client.post(IMPORT, post).status_code == 403
    assert not Prompt.objects.exists()
    token = client.get(IMPORT).context["csrf_token"]
    post["file"].seek(0)
    assert client.post(IMPORT, {**post, "csrfmiddlewaretoken": str(token)}).status_code == 302
    assert Prompt.objects.filter(text="Forged?").exists()
