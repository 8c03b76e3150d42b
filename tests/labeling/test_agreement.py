"""Agreement statistics: Kendall tau-b and Krippendorff's alpha, and the per-project report."""
import pytest
from labeling_factories import make_project, make_tasks, make_user, order_of

from labeling.agreement import kendall_tau_b, krippendorff_alpha, midranks, project_agreement
from labeling.services.queue import ranking_claim_next
from labeling.services.rankings import ranking_submit


def test_midranks_share_the_mean_rank_of_a_tie():
    assert midranks([[7], [5, 6], [8]]) == {7: 1, 5: 2.5, 6: 2.5, 8: 4}


@pytest.mark.parametrize(
    "a, b, tau",
    [
        ([[1], [2], [3], [4]], [[1], [2], [3], [4]], 1.0),
        ([[1], [2], [3], [4]], [[4], [3], [2], [1]], -1.0),
        ([[1], [2], [3], [4]], [[2], [1], [3], [4]], 2 / 3),
        ([[1, 2], [3], [4]], [[1], [2], [3], [4]], 5 / 30 ** 0.5),
        ([[1, 2, 3, 4]], [[1], [2], [3], [4]], None),
    ],
)
def test_kendall_tau_b(a, b, tau):
    assert kendall_tau_b(a, b) == (None if tau is None else pytest.approx(tau))


def test_krippendorff_alpha_matches_the_published_example():
    """Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units."""
    units = [[1, 1, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
             [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [5, 5, 5], [1, 1], [3]]
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=1e-3)
    assert krippendorff_alpha(units, "ordinal") == pytest.approx(0.815, abs=1e-3)
    assert krippendorff_alpha([[1, 1], [2, 2], [3, 3]]) == 1.0
    assert krippendorff_alpha([[1]]) is None


@pytest.mark.django_db
def test_project_report_compares_labelers_on_shared_tasks():
    project = make_project(overlap=3)
    tasks = make_tasks(project, 3)
    a, b, c = make_user("ann"), make_user("bob"), make_user("cy")
    for task in tasks:
        for labeler, reverse in ((a, False), (b, False), (c, True)):
            lease = ranking_claim_next(labeler=labeler)
            assert lease.task == task
            ranking_submit(assignment_id=lease.pk, labeler=labeler,
                           order=order_of(task, reverse=reverse))
    report = project_agreement(project=project)
    assert (report.tasks_ranked, report.tasks_with_overlap) == (3, 3)
    by_name = {row.username: row for row in report.labelers}
    assert by_name["ann"].mean_tau == pytest.approx(0.0)  # +1 with bob, -1 with cy
    assert by_name["cy"].mean_tau == pytest.approx(-1.0)
    pairs = {(p["a"], p["b"]): p["mean_tau"] for p in report.pairs}
    assert pairs[("ann", "bob")] == pytest.approx(1.0)
    assert report.alpha < 0.2
    assert report.as_dict()["labelers"][0]["username"] == "ann"
