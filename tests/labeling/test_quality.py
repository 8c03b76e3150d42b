"""Quality control: gold tasks mixed into the queue and scored, speeders flagged, labelers
excluded, per-labeler agreement, and dialogues saved from a suggestion without an edit."""
from datetime import timedelta

import pytest
from django.utils import timezone
from labeling_factories import make_project, make_tasks, make_user, order_of

from labeling.agreement import project_agreement
from labeling.edits import edit_distance
from labeling.errors import Invalid
from labeling.models import LabelerExclusion, RankingTask
from labeling.quality import excluded_labeler_ids, labeler_quality
from labeling.selectors import ranking_tasks_claimable
from labeling.services.demonstrations import dialogue_create
from labeling.services.quality import labeler_exclude, labeler_include, ranking_task_set_gold
from labeling.services.queue import ranking_claim_next
from labeling.services.rankings import ranking_submit


def rank(labeler, project, *, reverse=False, ms=20_000):
    assignment = ranking_claim_next(labeler=labeler, project=project)
    return ranking_submit(assignment_id=assignment.pk, labeler=labeler,
                          order=order_of(assignment.task, reverse=reverse), time_spent_ms=ms)


def ids(task):
    return list(task.items.order_by("position").values_list("completion_id", flat=True))


@pytest.fixture
def gold_project(db):
    return make_project(gold_rate=1.0, gold_min_accuracy=0.7)


def test_gold_tasks_go_to_every_labeler_stay_open_and_score_each(gold_project):
    gold = make_tasks(gold_project, 3)
    for task in gold:
        first, *_, last = ids(task)
        ranking_task_set_gold(task_id=task.pk, best_id=first, worst_id=last)
    make_tasks(gold_project, 2)  # ordinary work, served once the gold is seen
    careful, careless = make_user("careful"), make_user("careless")
    for _ in range(3):
        assert rank(careful, gold_project).task.is_gold
        assert rank(careless, gold_project, reverse=True).task.is_gold
    assert not rank(careful, gold_project).task.is_gold
    assert set(RankingTask.objects.filter(pk__in=[t.pk for t in gold])
               .values_list("status", flat=True)) == {"open"}
    quality = labeler_quality(project=gold_project)
    assert (quality[careful.pk].gold_accuracy, quality[careful.pk].gold_flagged) == (1.0, False)
    assert (quality[careless.pk].gold_accuracy, quality[careless.pk].gold_flagged) == (0.0, True)


def test_gold_rate_zero_never_serves_gold_and_the_queue_never_counts_it(db):
    project = make_project(gold_rate=0.0)
    task = make_tasks(project, 1)[0]
    ranking_task_set_gold(task_id=task.pk, worst_id=ids(task)[0])
    lena = make_user("lena")
    assert ranking_claim_next(labeler=lena, project=project) is None
    assert not ranking_tasks_claimable(labeler=lena, project=project).exists()


def test_a_gold_answer_must_name_the_tasks_own_distinct_replies(db):
    project = make_project()
    task, other = make_tasks(project, 2)
    with pytest.raises(Invalid):
        ranking_task_set_gold(task_id=task.pk, best_id=ids(other)[0])
    with pytest.raises(Invalid):
        ranking_task_set_gold(task_id=task.pk, best_id=ids(task)[0], worst_id=ids(task)[0])
    ranking_task_set_gold(task_id=task.pk, best_id=ids(task)[0])
    task = ranking_task_set_gold(task_id=task.pk)  # no longer gold
    assert not task.is_gold


def test_a_labeler_far_faster_than_the_project_is_flagged_a_speeder(db):
    project = make_project(overlap=1)
    make_tasks(project, 12)
    steady, speedy = make_user("steady"), make_user("speedy")
    for _ in range(6):
        rank(steady, project, ms=30_000)
        rank(speedy, project, ms=900)
    quality = labeler_quality(project=project)
    assert quality[speedy.pk].is_speeder and quality[speedy.pk].fast_rankings == 6
    assert not quality[steady.pk].is_speeder


def test_exclusions_apply_to_snapshots_from_their_moment_on(db):
    project = make_project()
    lena, sam = make_user("lena"), make_user("sam", is_staff=True)
    before = timezone.now()
    labeler_exclude(project=project, labeler_id=lena.pk, created_by=sam, reason="speeder")
    again = labeler_exclude(project=project, labeler_id=lena.pk, created_by=sam)
    assert LabelerExclusion.objects.count() == 1 and again.reason == "speeder"
    now = before + timedelta(hours=1)
    assert list(excluded_labeler_ids(project=project, as_of=now)) == [{"labeler_id": lena.pk}]
    assert not excluded_labeler_ids(project=project, as_of=before - timedelta(seconds=1)).exists()
    assert labeler_include(project=project, labeler_id=lena.pk) == 1
    lifted = LabelerExclusion.objects.get().lifted_at
    assert not excluded_labeler_ids(project=project, as_of=lifted + timedelta(seconds=1)).exists()
    # A snapshot taken while it was in force still leaves lena out when read again.
    assert excluded_labeler_ids(project=project, as_of=lifted - timedelta(microseconds=1)).exists()


def test_agreement_is_reported_per_labeler_with_alpha(db):
    project = make_project(overlap=3)
    make_tasks(project, 3)
    a, b, c = make_user("a"), make_user("b"), make_user("c")
    for _ in range(3):
        rank(a, project)
        rank(b, project)
        rank(c, project, reverse=True)
    report = {row.username: row for row in project_agreement(project=project).labelers}
    assert report["a"].alpha is not None and report["c"].alpha is not None
    assert report["a"].mean_tau > report["c"].mean_tau


def test_a_dialogue_saved_from_a_suggestion_records_how_much_was_edited(db):
    project = make_project()
    task = make_tasks(project, 1)[0]
    suggestion = task.items.order_by("position").first().completion
    offered = [*suggestion.prompt.turns, {"role": "assistant", "content": suggestion.text}]
    lena = make_user("lena")
    unedited = dialogue_create(project=project, labeler=lena, turns=offered,
                               client_token="t1", suggestion_id=suggestion.pk)
    edited = dialogue_create(
        project=project, labeler=lena, client_token="t2", suggestion_id=suggestion.pk,
        turns=[offered[0], {"role": "assistant", "content": suggestion.text + " Indeed!"}],
    )
    own = dialogue_create(project=project, labeler=lena, turns=offered, client_token="t3")
    assert (unedited.edit_distance, unedited.is_unedited_suggestion) == (0, True)
    assert (edited.edit_distance, edited.is_unedited_suggestion) == (8, False)
    assert (own.edit_distance, own.is_unedited_suggestion) == (None, False)


def test_edit_distance_is_exact_for_local_edits_of_long_texts():
    assert edit_distance("kitten", "sitting") == 3
    long = "def f(x):\n    return x\n" * 2000  # 48,000 characters
    assert edit_distance(long, long) == 0
    assert edit_distance(long, long[:100] + "y" + long[101:]) == 1
    assert edit_distance(long, long + "# done") == 6
    # Changes everywhere: an upper bound, still positive.
    assert edit_distance(long, long.replace("x", "y")) >= 4000


def test_staff_see_speeders_and_exclude_them_from_the_labelers_page(client, db):
    project = make_project(slug="qc")
    make_tasks(project, 8)
    steady, speedy = make_user("steady"), make_user("speedy")
    for _ in range(4):
        rank(steady, project, ms=30_000)
        rank(speedy, project, ms=500)
    client.force_login(speedy)
    assert client.post("/label/stats/qc/exclusion/", {"labeler": speedy.pk}).status_code == 403
    client.force_login(make_user("sam", is_staff=True))
    page = client.get("/label/stats/qc/").content.decode()
    row = page[page.index(f'id="labeler-{speedy.pk}"'):].split("</tr>")[0]
    assert "speeder" in row and "Exclude their rankings" in row
    response = client.post("/label/stats/qc/exclusion/",
                           {"labeler": speedy.pk, "action": "exclude", "reason": "speeder"})
    assert response.status_code == 302
    assert LabelerExclusion.objects.get().labeler == speedy
    page = client.get("/label/stats/qc/").content.decode()
    assert "Use their rankings again" in page
    assert client.post("/label/stats/qc/exclusion/", {"labeler": "x"}).status_code == 404
    client.post("/label/stats/qc/exclusion/", {"labeler": speedy.pk, "action": "include"})
    assert LabelerExclusion.objects.get().lifted_at is not None


def test_staff_set_a_gold_answer_in_the_admin(admin_client, db):
    project = make_project()
    task = make_tasks(project, 1)[0]
    url = f"/admin/labeling/rankingtask/{task.pk}/gold/"
    assert "Save the gold answer" in admin_client.get(url).content.decode()
    first, *_, last = ids(task)
    assert admin_client.post(url, {"best": first, "worst": first}).status_code == 400
    assert admin_client.post(url, {"best": first, "worst": last}).status_code == 302
    task.refresh_from_db()
    assert (task.gold_best_id, task.gold_worst_id) == (first, last)
    listing = admin_client.get("/admin/labeling/rankingtask/?gold=yes").content.decode()
    assert "gold ✓" in listing
    assert admin_client.get("/admin/labeling/rankingtask/999999/gold/").status_code == 404
