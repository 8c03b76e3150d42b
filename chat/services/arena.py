"""The arena: two anonymous model versions answer the same message; the labeler picks the better
reply, a tie, or both bad. Sides are drawn at random, names stay hidden until the vote, and the
vote is stored as a pairwise comparison (`labeling.Vote`, source "arena") so the leaderboard
counts it beside the blind comparison tasks."""

import random

from django.db import transaction
from django.utils import timezone

from chat.models import ArenaBattle
from chat.services.conversations import MAX_MESSAGE_CHARS, chat_models, chat_settings
from labeling.errors import Conflict, Invalid, NotFound
from labeling.models import Project, Vote
from labeling.services.comparisons import clean_outcome
from labeling.validation import clean_text
from training.models import Generation
from training.services.generations import generation_request


@transaction.atomic
def arena_start(*, labeler, project: Project, text: str, rng=None) -> ArenaBattle:
    rng = rng or random.SystemRandom()
    versions = list(chat_models(project))
    if len(versions) < 2:
        raise Invalid(f"The arena needs two models open for chat in {project.name}; it has "
                      f"{len(versions)}.")  # fmt: skip
    text = clean_text(text, field="The message", max_chars=MAX_MESSAGE_CHARS)
    left, right = rng.sample(versions, 2)
    turns = [{"role": "user", "content": text}]
    seed = rng.randrange(2**31)
    sampling = {**chat_settings(project).sampling(), "seed": seed}
    a, b = (generation_request(model_version=v, turns=turns, user=labeler, sampling=sampling)
            for v in (left, right))  # fmt: skip
    return ArenaBattle.objects.create(project=project, labeler=labeler, text=text,
                                      reply_a=a, reply_b=b)  # fmt: skip


def arena_get(*, labeler, pk) -> ArenaBattle:
    """One of the labeler's own battles (anyone else's is "not found")."""
    battle = (ArenaBattle.objects.select_related("reply_a__model_version",
              "reply_b__model_version", "vote").filter(labeler=labeler, pk=pk).first())  # fmt: skip
    if battle is None:
        raise NotFound("There is no such arena battle among yours.")
    return battle


@transaction.atomic
def arena_vote(*, labeler, pk, outcome: str) -> Vote:
    """Store the vote once: voting again returns the first vote and writes nothing."""
    battle = (ArenaBattle.objects.select_for_update(of=("self",))
              .select_related("reply_a", "reply_b", "vote").filter(labeler=labeler, pk=pk)
              .first())  # fmt: skip
    if battle is None:
        raise NotFound("There is no such arena battle among yours.")
    if battle.vote is not None:
        return battle.vote
    outcome = clean_outcome(outcome)
    if any(g.status != Generation.Status.DONE for g in (battle.reply_a, battle.reply_b)):
        raise Conflict("Wait until both replies are written, then vote.")
    vote = Vote.objects.create(
        source=Vote.Source.ARENA, project_id=battle.project_id, labeler=labeler,
        version_a_id=battle.reply_a.model_version_id,
        version_b_id=battle.reply_b.model_version_id, outcome=outcome,
        created_at=timezone.now(),
    )  # fmt: skip
    battle.vote = vote
    battle.save(update_fields=["vote"])
    return vote
