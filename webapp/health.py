"""Is the system able to work? The database, Redis and the Celery workers, each checked alone.

Used by the staff status page and `manage.py health`. Every check returns a `Check` rather than
raising, so a page that shows them still renders when Redis or every worker is down.
"""
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import redis
from django.db import connection

from webapp.celery import app

WORKER_REPLY_TIMEOUT = 1.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True  # an optional part down is a warning, not "unhealthy"


@dataclass(frozen=True)
class Worker:
    name: str
    queues: list[str] = field(default_factory=list)


def check_database() -> Check:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver error means "unreachable" to an operator
        return Check("database", False, f"unreachable: {exc}")
    return Check("database", True, connection.vendor)


def check_redis() -> Check:
    try:
        redis.Redis.from_url(app.conf.broker_url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        return Check("redis", False, f"unreachable at {_safe_url()}: {exc}")
    return Check("redis", True, _safe_url())


def find_workers() -> list[Worker]:
    """The workers that answer within a second, with the queues each consumes."""
    replies = app.control.inspect(timeout=WORKER_REPLY_TIMEOUT).active_queues() or {}
    return [
        Worker(name, sorted(q["name"] for q in queues))
        for name, queues in sorted(replies.items())
    ]


def check_workers(redis_check: Check) -> tuple[Check, list[Worker]]:
    if not redis_check.ok:
        return Check("workers", False, "unknown: Redis is unreachable"), []
    try:
        workers = find_workers()
    except Exception as exc:  # kombu raises several kinds on a broken connection
        return Check("workers", False, f"could not ask: {exc}"), []
    if not workers:
        return Check("workers", False, "no worker is running"), []
    return Check("workers", True, f"{len(workers)} running"), workers


def check_inference(redis_check: Check) -> Check:
    """The live model (chat, suggestions): optional, since training works without it."""
    from training.inference import channel

    if not redis_check.ok:
        return Check("inference", False, "unknown: Redis is unreachable", required=False)
    try:
        found = channel.workers()
    except redis.RedisError as exc:
        return Check("inference", False, f"could not ask: {exc}", required=False)
    if not found:
        return Check("inference", False, "no inference worker is running: chat replies wait "
                     "until `manage.py inference_worker` starts", required=False)  # fmt: skip
    detail = "; ".join(f"{w.name} on {w.device}, loaded: {', '.join(w.models) or 'none yet'}"
                       for w in found)  # fmt: skip
    return Check("inference", True, detail, required=False)


def system_health() -> tuple[list[Check], list[Worker]]:
    redis_check = check_redis()
    workers_check, workers = check_workers(redis_check)
    checks = [check_database(), redis_check, workers_check, check_inference(redis_check)]
    return checks, workers


def _safe_url() -> str:
    """The broker URL without its password, fit to show on a page."""
    parts = urlsplit(app.conf.broker_url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
