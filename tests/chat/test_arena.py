"""The arena: two anonymous versions answer one message; the vote feeds the leaderboard."""

import random

import pytest
from chat_helpers import version
from django.contrib.auth import get_user_model

from chat.models import ArenaBattle
from chat.services.arena import arena_start
from chat.services.conversations import chat_models_allow
from labeling.evaluation_selectors import project_votes
from labeling.models import Vote
from training.models import Generation
from training.services.generations import generation_finish

pytestmark = pytest.mark.django_db
User = get_user_model()


@pytest.fixture
def models(project):
    pair = [version("policy-alpha", "policy", project), version("policy-beta", "policy", project)]
    chat_models_allow(project=project, versions=pair)
    return pair


def finish_both(battle):
    for g, text in ((battle.reply_a, "Reply one"), (battle.reply_b, "Reply two")):
        generation_finish(g, text=text, finish_reason="stop", completion_tokens=2)


def test_two_different_models_answer_and_their_names_stay_hidden_until_the_vote(
    lena_client, lena, project, models
):
    response = lena_client.post("/chat/arena/start/", {"project": "help", "text": "Hi there"})
    battle = ArenaBattle.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/chat/arena/{battle.pk}/"
    a, b = battle.reply_a, battle.reply_b
    assert a.model_version != b.model_version and {a.model_version, b.model_version} == set(models)
    assert a.turns == b.turns == [{"role": "user", "content": "Hi there"}]
    assert a.sampling == b.sampling

    finish_both(battle)
    page = lena_client.get(f"/chat/arena/{battle.pk}/").text
    assert "Reply one" in page and "Reply two" in page
    assert "policy-alpha" not in page and "policy-beta" not in page  # blind

    lena_client.post(f"/chat/arena/{battle.pk}/vote/", {"outcome": "b"})
    vote = Vote.objects.get()
    assert vote.source == Vote.Source.ARENA and vote.outcome == "b" and vote.labeler == lena
    assert (vote.version_a_id, vote.version_b_id) == (a.model_version_id, b.model_version_id)
    page = lena_client.get(f"/chat/arena/{battle.pk}/").text
    assert f"Model A: {a.model_version.name}" in page and f"Model B: {b.model_version.name}" in page
    assert list(project_votes(project=project)) == [vote]  # the leaderboard counts it

    lena_client.post(f"/chat/arena/{battle.pk}/vote/", {"outcome": "a"})  # again: no change
    assert Vote.objects.count() == 1 and Vote.objects.get().outcome == "b"


def test_sides_are_drawn_at_random(lena, project, models, settings):
    settings.CHAT_RATE_LIMIT_PER_MINUTE = 100
    lefts = {arena_start(labeler=lena, project=project, text="Hi", rng=random.Random(seed))
             .reply_a.model_version.name for seed in range(12)}  # fmt: skip
    assert lefts == {"policy-alpha", "policy-beta"}


def test_a_vote_waits_for_both_replies_and_must_be_an_outcome(lena_client, lena, project,
                                                              models):  # fmt: skip
    battle = arena_start(labeler=lena, project=project, text="Hi")
    early = lena_client.post(f"/chat/arena/{battle.pk}/vote/", {"outcome": "a"})
    assert early.status_code == 409 and "Wait until both replies" in early.text
    finish_both(battle)
    bad = lena_client.post(f"/chat/arena/{battle.pk}/vote/", {"outcome": "left"})
    assert bad.status_code == 400 and not Vote.objects.exists()


def test_the_arena_needs_two_open_models_and_battles_are_private(client, lena, project):
    only = version("policy-alpha", "policy", project)
    chat_models_allow(project=project, versions=[only])
    client.force_login(lena)
    refused = client.post("/chat/arena/start/", {"project": "help", "text": "Hi"})
    assert refused.status_code == 400 and "needs two models" in refused.text
    assert not Generation.objects.exists()

    chat_models_allow(project=project, versions=[version("policy-beta", "policy", project)])
    battle = arena_start(labeler=lena, project=project, text="Hi")
    client.force_login(User.objects.create_user("omar"))
    assert client.get(f"/chat/arena/{battle.pk}/").status_code == 404
    assert client.post(f"/chat/arena/{battle.pk}/vote/", {"outcome": "a"}).status_code == 404
