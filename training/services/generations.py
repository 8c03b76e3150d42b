"""Generations: replies the live model writes for a person, from request to finished text.

The web app calls `generation_request` (validated, rate-limited, then handed to the inference
worker through Redis); the worker calls `generation_start`, `generation_first_token` and
`generation_finish` / `generation_fail`. A request whose worker was down stays queued and is
served when one starts (the Redis stream keeps it); `generation_resubmit` is the page's retry.
"""

import logging
from datetime import timedelta

import redis
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from training.errors import Conflict, Invalid, RateLimited
from training.inference import channel
from training.ml.chat_format import check_turns
from training.models import Generation, ModelVersion
from webapp.queueing import QueueUnavailable, enqueue_by_name

log = logging.getLogger(__name__)

# What a person may set, with its bounds: (low, high, default).
SAMPLING_BOUNDS = {
    "temperature": (0.0, 2.0, 0.7),
    "top_p": (0.01, 1.0, 0.95),
    "max_new_tokens": (1, 1024, 256),
}
CHAT_KINDS = (ModelVersion.Kind.BASE, ModelVersion.Kind.SFT, ModelVersion.Kind.POLICY)
MAX_TURN_CHARS = 20_000


def clean_sampling(raw: dict | None, defaults: dict | None = None) -> dict:
    """Sampling settings within bounds, as numbers; a clear Invalid naming the bad one."""
    raw, defaults = raw or {}, defaults or {}
    unknown = set(raw) - set(SAMPLING_BOUNDS) - {"seed"}
    if unknown:
        raise Invalid(f"unknown sampling setting(s): {', '.join(sorted(unknown))}")
    cleaned = {}
    for name, (low, high, default) in SAMPLING_BOUNDS.items():
        value = raw.get(name, defaults.get(name, default))
        kind = int if isinstance(low, int) else float
        try:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError
            value = kind(value)
        except (TypeError, ValueError, OverflowError):
            raise Invalid(f"{name} must be a number") from None
        if not low <= value <= high:  # also refuses NaN
            raise Invalid(f"{name} must be between {low} and {high}")
        cleaned[name] = value
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise Invalid("seed must be a whole number from 0 to 2147483647")
    cleaned["seed"] = seed
    return cleaned


def clean_dialogue(turns) -> list[dict]:
    """The dialogue checked (roles, order, ends with the user) and made storable: only role and
    content kept, NUL characters dropped (PostgreSQL refuses them), each turn at most
    MAX_TURN_CHARS."""
    try:
        _, pairs = check_turns(turns)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    if pairs[-1][0] != "user":
        raise Invalid("the dialogue must end with a user turn for the model to answer")
    if any(len(t["content"]) > MAX_TURN_CHARS for t in turns):
        raise Invalid(f"a turn is longer than {MAX_TURN_CHARS} characters")
    return [{"role": t["role"], "content": t["content"].replace("\x00", "")} for t in turns]


def generation_request(
    *, model_version: ModelVersion, turns: list[dict], user=None, sampling: dict | None = None,
    on_done: str = "",
) -> Generation:  # fmt: skip
    """Queue a reply to `turns` from `model_version`. Raises RateLimited past the person's
    per-minute budget, Invalid for a bad dialogue or settings; nothing is written then."""
    if model_version.kind not in CHAT_KINDS:
        raise Invalid(f"{model_version.name} is a {model_version.kind} model: it writes no text")
    turns = clean_dialogue(turns)
    sampling = clean_sampling(sampling)
    if user is not None:
        since = timezone.now() - timedelta(minutes=1)
        recent = Generation.objects.filter(requested_by=user, created_at__gte=since).count()
        if recent >= settings.CHAT_RATE_LIMIT_PER_MINUTE:
            raise RateLimited(
                f"You asked for {recent} replies in the last minute, the limit is "
                f"{settings.CHAT_RATE_LIMIT_PER_MINUTE}: wait a moment and try again."
            )
    generation = Generation.objects.create(
        model_version=model_version, requested_by=user, turns=turns, sampling=sampling,
        on_done=on_done,
    )  # fmt: skip
    transaction.on_commit(lambda: _submit(generation))
    return generation


def _submit(generation: Generation) -> bool:
    """Put the request on the stream; with Redis down the row stays queued for a retry."""
    try:
        channel.submit(generation.key)
    except redis.RedisError as exc:
        log.warning("generation %s not submitted (Redis unreachable: %s)", generation.key, exc)
        return False
    return True


def generation_resubmit(generation: Generation) -> Generation:
    """The page's retry: hand a queued generation to the worker again (a duplicate request is
    harmless: the worker skips generations already running or finished)."""
    if generation.status in Generation.FINISHED:
        raise Conflict("this reply is already finished")
    if not _submit(generation):
        raise Conflict("Redis is unreachable: the live model cannot be asked now")
    return generation


def generation_start(generation: Generation, *, prompt_tokens: int, dropped_turns: int) -> bool:
    """Mark it running (again, after a worker restart); False when it is already finished."""
    updated = Generation.objects.filter(pk=generation.pk).exclude(
        status__in=Generation.FINISHED
    ).update(status=Generation.Status.RUNNING, started_at=timezone.now(),
             prompt_tokens=prompt_tokens, dropped_turns=dropped_turns)  # fmt: skip
    return bool(updated)


def generation_first_token(generation: Generation) -> None:
    Generation.objects.filter(pk=generation.pk, first_token_at=None).update(
        first_token_at=timezone.now()
    )


def generation_finish(
    generation: Generation, *, text: str, finish_reason: str, completion_tokens: int
) -> None:
    """Store the text, then call `on_done` back. The text is kept even when the broker cannot
    take the callback (the callback's own periodic sweep catches up later)."""
    try:
        with transaction.atomic():
            updated = Generation.objects.filter(pk=generation.pk).exclude(
                status__in=Generation.FINISHED
            ).update(status=Generation.Status.DONE, text=text.replace("\x00", ""),
                     finish_reason=finish_reason,
                     completion_tokens=completion_tokens, finished_at=timezone.now())  # fmt: skip
            if updated and generation.on_done:
                enqueue_by_name(generation.on_done, args=(generation.pk,), queue="default")
    except QueueUnavailable as exc:
        log.warning("generation %s: callback %s not queued: %s", generation.key,
                    generation.on_done, exc)  # fmt: skip


def generation_fail(generation: Generation, error: str) -> None:
    Generation.objects.filter(pk=generation.pk).exclude(status__in=Generation.FINISHED).update(
        status=Generation.Status.FAILED, error=error[:2000], finished_at=timezone.now()
    )
