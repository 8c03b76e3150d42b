"""End to end in headless Chromium with a real worker: a staff member starts an SFT run from the
project page, watches the run page move to "Succeeded" without reloading (progress bar, loss
curve, the new model), and cancels a long run from its page.

Run: `pytest -m browser tests/training` (Debian's Chromium, see tests/conftest.py).
"""

import pytest
from playwright.sync_api import expect

from training.models import TrainingRun

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.urls("training_urls")]
LIVE_TIMEOUT = 120_000  # ms: the worker trains on one contended CPU thread


@pytest.fixture
def chief(transactional_db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("chief", password="pw-chief-123", is_staff=True)


def log_in(page, user, next_url):
    page.goto(f"/accounts/login/?next={next_url}")
    page.fill("input[name=username]", user.get_username())
    page.fill("input[name=password]", "pw-chief-123")
    with page.expect_navigation():
        page.click("button[type=submit]")


def start_sft(page, *, max_steps: int):
    """Fill the SFT form's settings and press Start; returns on the run page."""
    form = page.locator("#start-sft")
    form.locator("summary").click()
    form.locator("input[name=cfg_max_steps]").fill(str(max_steps))
    form.locator("input[name=cfg_batch_size]").fill("4")
    form.locator("input[name=cfg_eval_every]").fill("5")
    form.locator("input[name=cfg_checkpoint_every]").fill("5")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    expect(page.locator("h1")).to_contain_text("run #")


def test_staff_starts_sft_and_watches_it_finish_without_reloading(
    page, chief, training_worker, project_with_demos, base_version
):
    training_worker()
    log_in(page, chief, f"/training/projects/{project_with_demos.slug}/")
    start_sft(page, max_steps=12)
    run = TrainingRun.objects.get()
    assert (run.kind, run.created_by, run.config["max_steps"]) == ("sft", chief, 12)
    page.evaluate("window.notReloaded = true")  # gone if the page were loaded again

    state = page.locator("#run-live .state")
    expect(state).to_have_text("Succeeded", timeout=LIVE_TIMEOUT)
    assert page.evaluate("window.notReloaded") is True  # htmx swapped the fragment in place
    expect(page.locator("#run-live progress")).to_have_attribute("value", "12")
    expect(page.locator("#run-live")).to_contain_text("step 12 of 12 (100%)")
    expect(page.locator("#run-live .charts svg").first).to_be_visible()
    run.refresh_from_db()
    made = page.locator("#run-live a", has_text=run.output_model.name)
    expect(made).to_be_visible()
    with page.expect_navigation():
        made.click()
    expect(page.locator("body")).to_contain_text(base_version.name)  # its parent, the lineage


def test_staff_cancels_a_running_run_from_its_page(
    page, chief, training_worker, project_with_demos, base_version
):
    training_worker()
    log_in(page, chief, f"/training/projects/{project_with_demos.slug}/")
    start_sft(page, max_steps=100_000)
    state = page.locator("#run-live .state")
    expect(state).to_have_text("Running", timeout=LIVE_TIMEOUT)
    with page.expect_navigation():
        page.locator("#run-live button", has_text="Cancel").click()
    expect(state).to_have_text("Cancelled", timeout=LIVE_TIMEOUT)
    resume = page.locator("#run-live button", has_text="Resume from the last checkpoint")
    expect(resume).to_be_visible()
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.CANCELLED
    assert 0 < run.step < 100_000
