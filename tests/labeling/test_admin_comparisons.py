"""The admin of blind comparisons: every list and detail page renders (names shown to staff
only), votes are read-only, and cancelling a batch withdraws its open tasks."""
import pytest
from comparison_factories import make_comparison
from django.apps import apps
from labeling_factories import make_project, make_user

from labeling.models import ComparisonTask, Vote
from labeling.services.comparisons import vote_submit
from labeling.services.queue import comparison_claim_next

pytestmark = pytest.mark.django_db
ADMIN = "/admin/labeling/"


@pytest.fixture
def admin_client(client):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def batch():
    project = make_project()
    batch = make_comparison(project, prompts=2)
    voter = make_user()
    lease = comparison_claim_next(labeler=voter, project=project)
    vote_submit(assignment_id=lease.pk, labeler=voter, outcome="a")
    return batch


@pytest.mark.parametrize("model", ["comparisonbatch", "comparisontask", "vote"])
def test_every_list_and_detail_page_renders(admin_client, batch, model):
    page = admin_client.get(f"{ADMIN}{model}/")
    assert page.status_code == 200
    obj = apps.get_model("labeling", model).objects.first()
    assert admin_client.get(f"{ADMIN}{model}/{obj.pk}/change/").status_code == 200
    if model == "comparisontask":
        assert "sft-alpha" in page.content.decode()  # staff see which model is which


def test_votes_cannot_be_added_or_edited(admin_client, batch):
    vote = Vote.objects.get()
    assert admin_client.get(f"{ADMIN}vote/add/").status_code == 403
    admin_client.post(f"{ADMIN}vote/{vote.pk}/change/", {"outcome": "b"})
    vote.refresh_from_db()
    assert vote.outcome == "a"


def test_cancel_withdraws_the_open_tasks(admin_client, batch):
    admin_client.post(f"{ADMIN}comparisonbatch/", {"action": "cancel",
                                                   "_selected_action": [batch.pk]})
    statuses = sorted(ComparisonTask.objects.values_list("status", flat=True))
    assert statuses == ["cancelled", "complete"]
