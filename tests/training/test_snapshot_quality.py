"""The dataset a run trains on leaves out what quality control says is not a person's work:
dialogues saved from a model suggestion unedited (unless the project includes them) and the
rankings of labelers staff excluded; the run's stored rows keep that decision. An iterated DPO
run asked for its own replies' rankings takes only the tasks that rank its input model."""
import pytest
from django.utils import timezone
from training_helpers import make_project

from labeling.models import Completion, Prompt
from labeling.services.demonstrations import dialogue_create
from labeling.services.projects import project_update
from labeling.services.quality import labeler_exclude
from labeling.services.queue import ranking_claim_next
from labeling.services.ranking_tasks import ranking_tasks_create
from labeling.services.rankings import ranking_submit
from training.errors import Invalid
from training.models import ModelVersion
from training.services.snapshots import snapshot_take


@pytest.fixture(autouse=True)
def small_minimums(settings):
    settings.TRAINING_MIN_DEMONSTRATIONS = 1
    settings.TRAINING_MIN_RANKED_TASKS = 1


def suggestion_in(project) -> Completion:
    prompt = Prompt.objects.create(project=project, turns=[{"role": "user", "content": "Hi?"}],
                                   text="Hi?", content_hash="x")
    return Completion.objects.create(prompt=prompt, text="Hello, how can I help?")


def test_unedited_suggestions_stay_out_of_sft_unless_the_project_includes_them(django_user_model):
    project = make_project()
    lena = django_user_model.objects.create_user("lena")
    suggestion = suggestion_in(project)
    turns = [{"role": "user", "content": "Hi?"},
             {"role": "assistant", "content": "Hello, how can I help?"}]
    copied = dialogue_create(project=project, labeler=lena, turns=turns, client_token="a",
                             suggestion_id=suggestion.pk)
    turns[1]["content"] = "Hello! What can I do for you?"
    written = dialogue_create(project=project, labeler=lena, turns=turns, client_token="b",
                              suggestion_id=suggestion.pk)
    before = snapshot_take(project=project, kind="sft", config={}, as_of=timezone.now())
    assert before.demonstrations == [written.pk]
    project_update(project=project, sft_include_unedited=True)
    after = snapshot_take(project=project, kind="sft", config={}, as_of=timezone.now())
    assert sorted(after.demonstrations) == [copied.pk, written.pk]


def test_an_excluded_labelers_rankings_leave_the_reward_data_from_then_on(django_user_model):
    project = make_project(overlap=2)
    prompt = Prompt.objects.create(project=project, turns=[{"role": "user", "content": "Q?"}],
                                   text="Q?", content_hash="q")
    [task] = ranking_tasks_create(
        project=project, batch_key="b",
        prompt_completions=[(prompt.pk, [{"text": f"A{i}"} for i in range(project.k)])],
    )
    ids = [[c] for c in task.items.values_list("completion_id", flat=True)]
    users = [django_user_model.objects.create_user(n) for n in ("good", "fast")]
    rankings = {}
    for user in users:
        assignment = ranking_claim_next(labeler=user, project=project)
        rankings[user.username] = ranking_submit(assignment_id=assignment.pk, labeler=user,
                                                 order=ids).pk
    earlier = timezone.now()
    labeler_exclude(project=project, labeler_id=users[1].pk, created_by=None, reason="speeder")
    now = snapshot_take(project=project, kind="reward", config={}, as_of=timezone.now())
    assert now.rankings == [rankings["good"]]
    old = snapshot_take(project=project, kind="reward", config={}, as_of=earlier)
    assert sorted(old.rankings) == sorted(rankings.values())


def test_dpo_on_its_own_replies_takes_only_the_tasks_that_rank_its_input_model(
    django_user_model,
):
    project = make_project()
    sft, policy = (ModelVersion.objects.create(kind=kind, name=name, project=project,
                                               checkpoint_dir="x", tokenizer_path="x")
                   for kind, name in (("sft", "sft-1"), ("policy", "policy-1")))  # fmt: skip
    lena = django_user_model.objects.create_user("lena")
    rankings = {}
    for i, version in enumerate((sft, policy)):  # a round of tasks from each, best first
        prompt = Prompt.objects.create(project=project, turns=[{"role": "user", "content": "Q?"}],
                                       text=f"Q{i}?", content_hash=f"q{i}")  # fmt: skip
        ranking_tasks_create(project=project, batch_key=f"round-{i}", prompt_completions=[(
            prompt.pk, [{"text": f"A{j}", "model_version_id": version.pk}
                        for j in range(project.k)])])  # fmt: skip
        assignment = ranking_claim_next(labeler=lena, project=project)
        order = [[c] for c in assignment.task.items.values_list("completion_id", flat=True)]
        rankings[version.name] = ranking_submit(assignment_id=assignment.pk, labeler=lena,
                                                order=order).pk  # fmt: skip

    def dpo_rows(input_model, **config):
        return snapshot_take(project=project, kind="dpo", config=config, as_of=timezone.now(),
                             input_model=input_model).rankings  # fmt: skip

    assert sorted(dpo_rows(policy)) == sorted(rankings.values())  # every round's, by default
    assert dpo_rows(policy, own_replies=True) == [rankings["policy-1"]]
    assert dpo_rows(sft, own_replies=True) == [rankings["sft-1"]]
    newer = ModelVersion.objects.create(kind="policy", name="policy-2", project=project,
                                        checkpoint_dir="x", tokenizer_path="x")  # fmt: skip
    with pytest.raises(Invalid, match="has 0 ranked tasks of policy-2's replies"):
        dpo_rows(newer, own_replies=True)
