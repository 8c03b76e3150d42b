"""The staff training pages: the project page and its start forms, the run page and its live
fragment, cancel / resume, lineage; a labeler can neither see nor use any of it."""

import re

import pytest
from training_helpers import make_project

from training.models import RunMetric, TrainingRun
from training.services import lifecycle
from training.services.runs import run_create

pytestmark = pytest.mark.urls("training_urls")
S = TrainingRun.Status


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def start_post(project, base_version, **extra):
    return {"request_token": "tok-1", "preset": "tiny", "input_model": base_version.pk,
            "cfg_max_steps": "5", **extra}  # fmt: skip


def test_a_labeler_cannot_see_start_or_cancel(client, labeler, project_with_demos, base_version):
    run = run_create(kind="sft", project=project_with_demos, input_model=base_version)
    client.force_login(labeler)
    slug = project_with_demos.slug
    for url in (
        "/training/",
        f"/training/projects/{slug}/",
        f"/training/runs/{run.pk}/",
        f"/training/runs/{run.pk}/live/",
        f"/training/versions/{base_version.pk}/",
    ):
        assert client.get(url).status_code == 403, url
    response = client.post(
        f"/training/projects/{slug}/start/sft/", start_post(project_with_demos, base_version)
    )
    assert response.status_code == 403
    assert client.post(f"/training/runs/{run.pk}/cancel/").status_code == 403
    assert TrainingRun.objects.count() == 1
    run.refresh_from_db()
    assert run.status == S.QUEUED and not run.cancel_requested
    assert "/training/" not in client.get("/").content.decode()  # no link to the controls


def test_anonymous_visitors_are_sent_to_log_in(client, project_with_demos):
    response = client.get(f"/training/projects/{project_with_demos.slug}/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_project_page_shows_counts_versions_and_start_forms(
    staff_client, project_with_demos, base_version
):
    page = staff_client.get(f"/training/projects/{project_with_demos.slug}/").content.decode()
    assert "Demonstrations" in page and ">12<" in page
    assert "tiny-base" in page
    for kind in ("sft", "reward", "ppo", "dpo", "sample"):
        assert f'id="start-{kind}"' in page
    assert page.count("csrfmiddlewaretoken") >= 5
    gpu = staff_client.get(
        f"/training/projects/{project_with_demos.slug}/?preset=gpu"
    ).content.decode()
    assert 'name="preset" value="gpu"' in gpu and 'value="0.00002"' in gpu  # its SFT lr


def test_a_real_base_model_suggests_the_lora_preset(staff_client, project_with_demos,
                                                     base_version):  # fmt: skip
    url = f"/training/projects/{project_with_demos.slug}/"
    assert 'name="preset" value="tiny"' in staff_client.get(url).content.decode()
    base_version.metrics = {"parameters": 134_515_008}  # as SmolLM2's import records it
    base_version.save(update_fields=["metrics"])
    page = staff_client.get(url).content.decode()
    assert 'name="preset" value="lora"' in page and 'name="cfg_lora_rank" value="16"' in page


def test_start_creates_a_run_once_and_redirects_to_it(
    staff_client, project_with_demos, base_version
):
    url = f"/training/projects/{project_with_demos.slug}/start/sft/"
    response = staff_client.post(url, start_post(project_with_demos, base_version))
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/training/runs/{run.pk}/"
    assert run.config["max_steps"] == 5 and run.created_by.username == "sam"
    staff_client.post(url, start_post(project_with_demos, base_version))  # a double click
    assert TrainingRun.objects.count() == 1


def test_not_enough_data_is_refused_on_the_page_with_the_values_kept(
    staff_client, base_version, settings
):
    settings.TRAINING_MIN_DEMONSTRATIONS = 8
    project = make_project()
    url = f"/training/projects/{project.slug}/start/sft/"
    response = staff_client.post(url, start_post(project, base_version, cfg_lr="0.123"))
    page = response.content.decode()
    assert response.status_code == 400
    assert (
        "Not enough data for SFT: the project has 0 demonstrations, at least 8 are needed." in page
    )
    assert 'value="0.123"' in page
    assert not TrainingRun.objects.exists()


def test_a_bad_setting_is_refused_with_its_name(staff_client, project_with_demos, base_version):
    url = f"/training/projects/{project_with_demos.slug}/start/sft/"
    response = staff_client.post(
        url, start_post(project_with_demos, base_version, cfg_lr="<b>x</b>")
    )
    page = response.content.decode()
    assert response.status_code == 400 and "lr must be a number" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_run_page_shows_progress_curves_and_log_and_polls_until_finished(
    staff_client, project_with_demos, base_version
):
    run = run_create(kind="sft", project=project_with_demos, input_model=base_version)
    run = lifecycle.run_start(run_id=run.pk, key=str(run.key), worker="w<1>")
    lifecycle.run_progress(
        run_id=run.pk,
        attempt=1,
        step=2,
        total=4,
        metrics={"loss": 2.0},
        points=[(1, {"loss": 3.0}), (2, {"loss": 2.0})],
    )
    lifecycle.run_log(run_id=run.pk, attempt=1, line="<script>alert(1)</script>")
    page = staff_client.get(f"/training/runs/{run.pk}/").content.decode()
    assert 'hx-trigger="every 2s"' in page and f"/training/runs/{run.pk}/live/" in page
    assert "step 2 of 4 (50%)" in page and "<svg" in page and "polyline" in page
    assert re.search(r'id="run-pace">\d+ s so far · [\d.]+ steps a minute · about', page)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "w&lt;1&gt;" in page
    assert ">Cancel<" in page

    lifecycle.run_fail(run_id=run.pk, attempt=1, error="ValueError: no usable demonstration")
    live = staff_client.get(
        f"/training/runs/{run.pk}/live/", HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "every 2s" not in live  # finished: the polling stops
    assert "ValueError: no usable demonstration" in live and "Traceback" not in live
    assert "Resume from the last checkpoint" in live


def test_cancel_and_resume_buttons(staff_client, project_with_demos, base_version):
    run = run_create(kind="sft", project=project_with_demos, input_model=base_version)
    lifecycle.run_start(run_id=run.pk, key=str(run.key), worker="w1")
    response = staff_client.post(f"/training/runs/{run.pk}/cancel/")
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.cancel_requested
    lifecycle.run_stopped(run_id=run.pk, attempt=1)
    staff_client.post(f"/training/runs/{run.pk}/resume/")
    run.refresh_from_db()
    assert run.status == S.QUEUED
    response = staff_client.post(f"/training/runs/{run.pk}/resume/")  # a second start
    run.refresh_from_db()
    assert response.status_code == 409 and "already queued" in response.content.decode()


def test_missing_things_are_404_pages(staff_client):
    assert staff_client.get("/training/runs/999/").status_code == 404
    assert staff_client.get("/training/versions/999/").status_code == 404
    assert staff_client.get("/training/projects/nope/").status_code == 404


def test_curves_are_thinned_for_long_runs(project_with_demos, base_version):
    from training.selectors import metric_points

    run = run_create(kind="sft", project=project_with_demos, input_model=base_version)
    RunMetric.objects.bulk_create(
        [RunMetric(run=run, step=i, values={"loss": 1 / i}) for i in range(1, 1001)]
    )
    curve = metric_points(run=run, max_points=100)["loss"]
    assert len(curve) <= 101 and curve[0][0] == 1 and curve[-1][0] == 1000
    assert re.match(r"^\d", str(curve[0][0]))


def test_the_training_page_lists_each_projects_first_steps(staff_client, project_with_demos,
                                                           settings):
    settings.TRAINING_MIN_DEMONSTRATIONS = 20
    empty = make_project(name="Empty one")
    page = staff_client.get("/training/").content.decode()
    start = page.index(f"First steps of {project_with_demos.name}")
    steps = page[start:page.index("</ol>", start)]
    assert "○ A base model" in steps and "import_model --shipped" in steps
    assert "at least 20 demonstrations: the project has 12" in steps
    assert "○ The first round" in steps and "Needs an SFT model" in steps
    assert empty.name in page
    settings.TRAINING_MIN_DEMONSTRATIONS = 8
    page = staff_client.get("/training/").content.decode()
    assert "the project has 12 (enough: start SFT on the project&#x27;s page)" in page


def test_a_registered_base_model_ticks_the_first_step(staff_client, project_with_demos,
                                                      base_version):
    page = staff_client.get("/training/").content.decode()
    assert "✓ A base model" in page and "tiny-base is registered" in page


def test_start_forms_follow_the_loop_and_say_when_nothing_can_start(staff_client,
                                                                   project_with_demos):
    page = staff_client.get(f"/training/projects/{project_with_demos.slug}/").content.decode()
    order = [page.index(f'id="start-{kind}"') for kind in ("pretrain", "sft", "sample", "reward",
                                                           "ppo")]
    assert order == sorted(order)
    sft = page[order[1]:page.index("</form>", order[1])]
    assert "import or pretrain a base model first" in sft
    assert '<button type="submit" class="primary" disabled>Start</button>' in sft
