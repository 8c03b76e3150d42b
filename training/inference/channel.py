"""The Redis protocol between the web app and the inference worker, both sides in one place.

Requests: one Redis stream (`inference:requests`) read by the consumer group `inference`, so a
request is handed to one worker, stays pending until that worker acknowledges it, and is taken
again (XAUTOCLAIM) when a worker died holding it. A message carries only the generation's key:
the row in the database is the request.

Replies: one stream per generation (`inference:generation:<key>`) of events, each
`{"type": "token"|"reset"|"done"|"error", "text": ...}`. A stream rather than pub/sub because a
browser that connects late, or reconnects with Last-Event-ID, reads what it missed. Streams
expire an hour after their last event; the finished text is in the database anyway.

Liveness: the worker refreshes `inference:worker:<name>` (a TTL key) every few seconds.
"""

import json
import socket
from dataclasses import dataclass

import redis
from django.conf import settings

REQUESTS = "inference:requests"
GROUP = "inference"
WORKER_PREFIX = "inference:worker:"
STREAM_TTL_SECONDS = 3600
HEARTBEAT_TTL_SECONDS = 15


def connect() -> redis.Redis:
    return redis.Redis.from_url(
        settings.INFERENCE_REDIS_URL, socket_connect_timeout=2, decode_responses=True
    )


def reply_stream(key) -> str:
    return f"inference:generation:{key}"


def ensure_group(r: redis.Redis) -> None:
    try:
        r.xgroup_create(REQUESTS, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def submit(key) -> None:
    """Hand the generation `key` to a worker (one that starts later picks it up too)."""
    r = connect()
    ensure_group(r)
    r.xadd(REQUESTS, {"key": str(key)})


def publish(r: redis.Redis, key, kind: str, text: str = "") -> None:
    stream = reply_stream(key)
    pipe = r.pipeline()
    pipe.xadd(stream, {"type": kind, "text": text})
    pipe.expire(stream, STREAM_TTL_SECONDS)
    pipe.execute()


def read_events(r: redis.Redis, key, after: str = "0", block_ms: int = 0) -> list[tuple[str, dict]]:
    """Events of a generation after the event id `after` ("0": from the start)."""
    reply = r.xread({reply_stream(key): after}, block=block_ms or None, count=100)
    return [(event_id, fields) for _, events in reply for event_id, fields in events]


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    models: list[str]
    device: str


def beat(r: redis.Redis, info: WorkerInfo) -> None:
    r.set(WORKER_PREFIX + info.name, json.dumps(info.__dict__), ex=HEARTBEAT_TTL_SECONDS)


def workers(r: redis.Redis | None = None) -> list[WorkerInfo]:
    """The inference workers alive now (their heartbeat key has not expired)."""
    r = r or connect()
    names = sorted(r.scan_iter(match=WORKER_PREFIX + "*"))
    found = [r.get(name) for name in names]
    return [WorkerInfo(**json.loads(value)) for value in found if value]


def worker_name() -> str:
    """Stable per host, so a restarted worker claims its own pending requests first."""
    return f"inference@{socket.gethostname()}"
