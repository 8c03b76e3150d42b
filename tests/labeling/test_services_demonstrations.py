"""Demonstrations: replies to leased prompts and whole dialogues, idempotent by token."""
import pytest
from labeling_factories import make_project, make_prompt, make_user

from labeling.errors import Conflict, Invalid, NotFound
from labeling.models import Demonstration, Prompt
from labeling.services.demonstrations import demonstration_submit, dialogue_create
from labeling.services.queue import demonstration_claim_next
from labeling.services.ranking_tasks import ranking_tasks_create

pytestmark = pytest.mark.django_db


def dialogue(*contents):
    return [{"role": ("user", "assistant")[i % 2], "content": c} for i, c in enumerate(contents)]


def test_a_reply_becomes_the_prompts_dialogue_plus_the_answer():
    project = make_project()
    prompt = make_prompt(project, "What is 2+2?")
    labeler = make_user()
    lease = demonstration_claim_next(labeler=labeler, project=project)
    demo = demonstration_submit(
        assignment_id=lease.pk, labeler=labeler, reply=" 4. \r\n", client_token="tok-1",
        time_spent_ms=900,
    )
    assert demo.turns == dialogue("What is 2+2?", "4.")
    assert (demo.author, demo.prompt, demo.is_dialogue, demo.time_spent_ms) == (
        labeler, prompt, False, 900)
    # A double click with the same token, or a retry of the same reply, stores one row.
    assert demonstration_submit(assignment_id=lease.pk, labeler=labeler, reply="4.",
                                client_token="tok-1") == demo
    assert demonstration_submit(assignment_id=lease.pk, labeler=labeler, reply="4.",
                                client_token="tok-2") == demo
    # Another reply for the same lease is not silently dropped.
    with pytest.raises(Conflict, match="different reply"):
        demonstration_submit(assignment_id=lease.pk, labeler=labeler, reply="5",
                             client_token="tok-3")
    assert Demonstration.objects.count() == 1


def test_a_token_reused_on_a_new_lease_is_refused_and_the_lease_stays_open():
    """The earlier demonstration answers another prompt: returning it would tell the client
    that this reply was saved while nothing was."""
    project = make_project()
    make_prompt(project)
    make_prompt(project)
    labeler = make_user()
    first = demonstration_claim_next(labeler=labeler)
    demonstration_submit(assignment_id=first.pk, labeler=labeler, reply="One.",
                         client_token="form-1")
    second = demonstration_claim_next(labeler=labeler)
    with pytest.raises(Conflict, match="already used for another submission"):
        demonstration_submit(assignment_id=second.pk, labeler=labeler, reply="Two.",
                             client_token="form-1")
    second.refresh_from_db()
    assert second.status == "active" and Demonstration.objects.count() == 1
    demo = demonstration_submit(assignment_id=second.pk, labeler=labeler, reply="Two.",
                                client_token="form-2")
    assert demo.prompt_id == second.prompt_id and demo.turns[-1]["content"] == "Two."


def test_a_dialogue_token_reused_for_other_turns_or_for_a_lease_is_refused():
    project = make_project()
    make_prompt(project)
    labeler = make_user()
    dialogue_create(project=project, labeler=labeler, turns=dialogue("q", "a"),
                    client_token="dlg")
    with pytest.raises(Conflict, match="already used"):
        dialogue_create(project=project, labeler=labeler, turns=dialogue("q", "other"),
                        client_token="dlg")
    lease = demonstration_claim_next(labeler=labeler)
    with pytest.raises(Conflict, match="already used"):
        demonstration_submit(assignment_id=lease.pk, labeler=labeler, reply="r",
                             client_token="dlg")
    assert Demonstration.objects.count() == 1 and Prompt.objects.count() == 2


@pytest.mark.parametrize(
    "reply, token, error, message",
    [
        ("", "t", Invalid, "empty"),
        ("x" * 20_001, "t", Invalid, "too long"),
        ("ok", "", Invalid, "client token"),
        ("ok", "t" * 65, Invalid, "client token"),
    ],
)
def test_bad_replies_write_nothing(reply, token, error, message):
    project = make_project()
    make_prompt(project)
    labeler = make_user()
    lease = demonstration_claim_next(labeler=labeler)
    with pytest.raises(error, match=message):
        demonstration_submit(assignment_id=lease.pk, labeler=labeler, reply=reply,
                             client_token=token)
    assert not Demonstration.objects.exists()


def test_someone_elses_lease_or_token_is_refused():
    project = make_project()
    make_prompt(project)
    a, b = make_user(), make_user()
    lease = demonstration_claim_next(labeler=a)
    with pytest.raises(NotFound):
        demonstration_submit(assignment_id=lease.pk, labeler=b, reply="hi", client_token="t")
    demonstration_submit(assignment_id=lease.pk, labeler=a, reply="hi", client_token="t")
    with pytest.raises(Conflict):
        dialogue_create(project=project, labeler=b, turns=dialogue("q", "a"), client_token="t")


def test_a_dialogue_creates_its_prompt_and_is_idempotent():
    project = make_project()
    labeler = make_user()
    turns = dialogue("Hi", "Hello!", "Sort a list?", "Use sorted().")
    demo = dialogue_create(project=project, labeler=labeler, turns=turns, client_token="d1",
                           time_spent_ms=5000)
    assert demo.is_dialogue and demo.turns == turns
    prompt = demo.prompt
    assert prompt.turns == turns[:-1] and prompt.author == labeler
    assert prompt.source == Prompt.Source.LABELER and prompt.text.startswith("User: Hi")
    assert dialogue_create(project=project, labeler=labeler, turns=turns, client_token="d1") == demo
    assert Prompt.objects.count() == 1


@pytest.mark.parametrize(
    "turns, message",
    [
        (dialogue("only a question"), "end with a assistant"),
        ([{"role": "assistant", "content": "hi"}], "user turn"),
        (dialogue("q", "a", "q2"), "end with a assistant"),
        (dialogue("q", ""), "empty"),
        ([{"role": "user", "content": "q", "extra": 1}, {"role": "assistant", "content": "a"}],
         "role and a content"),
        ("not a list", "non-empty list"),
        (dialogue(*["x"] * 42), "at most"),
    ],
)
def test_bad_dialogues_write_nothing(turns, message):
    project = make_project()
    with pytest.raises(Invalid, match=message):
        dialogue_create(project=project, labeler=make_user(), turns=turns, client_token="x")
    assert not Prompt.objects.exists() and not Demonstration.objects.exists()


def test_a_dialogue_may_start_from_a_suggestion_of_the_same_project_only():
    project, other = make_project(), make_project()
    prompt = make_prompt(other)
    (task,) = ranking_tasks_create(
        project=other, batch_key="b",
        prompt_completions=[(prompt.pk, [{"text": f"s{i}"} for i in range(4)])],
    )
    suggestion = task.completions.first()
    with pytest.raises(NotFound):
        dialogue_create(project=project, labeler=make_user(), turns=dialogue("q", "a"),
                        client_token="s", suggestion_id=suggestion.pk)
    demo = dialogue_create(project=other, labeler=make_user(), turns=dialogue("q", "a"),
                           client_token="s", suggestion_id=suggestion.pk)
    assert demo.suggestion == suggestion


def test_near_duplicate_prompts_are_flagged_and_not_served_for_demonstrations():
    project = make_project()
    original = make_prompt(project, "How do I sort a list?")
    duplicate = make_prompt(project, "how do i SORT a list")
    assert duplicate.duplicate_of == original
    labeler = make_user()
    assert demonstration_claim_next(labeler=labeler).prompt == original
    assert demonstration_claim_next(labeler=make_user()) is None
