"""ranking_tasks_create: the training side pushes K samples per prompt back for ranking."""
import pytest
from labeling_factories import completions, make_project, make_prompt

from labeling.errors import Invalid, NotFound
from labeling.models import Completion, RankingTask
from labeling.services.ranking_tasks import ranking_tasks_create, ranking_tasks_reopen

pytestmark = pytest.mark.django_db


def test_tasks_keep_completion_order_model_and_sampling_and_copy_the_overlap():
    project = make_project(k=5, overlap=3)
    p1, p2 = make_prompt(project), make_prompt(project)
    items = [(p1.pk, completions(5, "a")), (p2.pk, completions(5, "b"))]
    tasks = ranking_tasks_create(project=project, prompt_completions=items, batch_key="round-1")
    assert [t.prompt for t in tasks] == [p1, p2]
    t1 = tasks[0]
    assert (t1.rankings_needed, t1.status, t1.batch_key) == (3, "open", "round-1")
    texts = list(t1.items.order_by("position").values_list("completion__text", flat=True))
    assert texts == [f"a {i}" for i in range(5)]
    c = t1.completions.first()
    assert (c.model_label, c.model_version_id, c.sampling) == ("sft-1", 1, {"temperature": 1.0})


def test_pushing_the_same_batch_again_creates_nothing():
    project = make_project()
    prompt = make_prompt(project)
    items = [(prompt.pk, completions(4))]
    first = ranking_tasks_create(project=project, prompt_completions=items, batch_key="k")
    again = ranking_tasks_create(project=project, prompt_completions=items, batch_key="k")
    assert again == first
    assert RankingTask.objects.count() == 1 and Completion.objects.count() == 4
    ranking_tasks_create(project=project, prompt_completions=items, batch_key="k2")
    assert RankingTask.objects.count() == 2


@pytest.mark.parametrize(
    "mutate, error, message",
    [
        (lambda items, other: [(items[0][0], completions(3))], Invalid, "exactly 4"),
        (lambda items, other: [(items[0][0], completions(10))], Invalid, "exactly 4"),
        (lambda items, other: [(other.pk, completions(4))], NotFound, "not in the project"),
        (lambda items, other: [(999_999, completions(4))], NotFound, "not in the project"),
        (lambda items, other: items + items, Invalid, "twice"),
        (lambda items, other: [(items[0][0], [{"text": ""}] * 4)], Invalid, "empty"),
        (lambda items, other: [(items[0][0], [{"text": "x" * 20_001}] * 4)], Invalid, "too long"),
        (lambda items, other: [(items[0][0], [{"text": "x", "sampling": 3}] * 4)], Invalid,
         "sampling"),
    ],
)
def test_a_bad_batch_writes_nothing(mutate, error, message):
    project = make_project()
    other = make_prompt(make_project())
    items = [(make_prompt(project).pk, completions(4)), (make_prompt(project).pk, completions(4))]
    with pytest.raises(error, match=message):
        ranking_tasks_create(project=project, prompt_completions=mutate(items, other),
                             batch_key="bad")
    assert not RankingTask.objects.exists() and not Completion.objects.exists()


def test_reopen_asks_for_more_rankings_of_complete_tasks():
    project = make_project()
    prompt = make_prompt(project)
    (task,) = ranking_tasks_create(project=project, batch_key="r",
                                   prompt_completions=[(prompt.pk, completions(4))])
    RankingTask.objects.filter(pk=task.pk).update(status="complete", rankings_count=1)
    assert ranking_tasks_reopen(task_ids=[task.pk], additional=2) == 1
    task.refresh_from_db()
    assert (task.status, task.rankings_needed) == ("open", 3)
    with pytest.raises(Invalid):
        ranking_tasks_reopen(task_ids=[task.pk], additional=0)
