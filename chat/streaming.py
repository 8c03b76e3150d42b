"""Server-sent events for one generation: the tokens as the worker writes them.

The browser's EventSource reconnects by itself and sends the id of the last event it got
(Last-Event-ID), so a dropped connection resumes where it stopped, from the Redis stream. A
response lasts at most STREAM_SECONDS (a sync server's thread is held meanwhile), then the
browser reconnects. When no inference worker is alive the stream says so ("down") and keeps
waiting: the request is queued in Redis and is served when a worker starts.
"""

import json
import time

import redis
from django.http import StreamingHttpResponse

from training.inference import channel
from training.models import Generation

STREAM_SECONDS = 55
BLOCK_MS = 2000


def sse(kind: str, text: str = "", event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id else ""
    return f"{head}event: {kind}\ndata: {json.dumps({'text': text})}\n\n"


def events_response(generation: Generation, after: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_events(generation, after), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def _events(generation: Generation, after: str):
    yield "retry: 2000\n\n"
    try:
        r = channel.connect()
        said_down = False
        deadline = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < deadline:
            events = channel.read_events(r, generation.key, after, block_ms=BLOCK_MS)
            for event_id, fields in events:
                after = event_id
                yield sse(fields.get("type", "token"), fields.get("text", ""), event_id)
                if fields.get("type") in ("done", "error"):
                    return
            if events:
                continue
            generation.refresh_from_db(fields=["status", "text", "error"])
            if generation.status == Generation.Status.DONE:  # its stream expired
                yield sse("done", generation.text)
                return
            if generation.status == Generation.Status.FAILED:
                yield sse("error", generation.error)
                return
            alive = bool(channel.workers(r))
            if alive == said_down:
                said_down = not alive
                yield sse("down" if said_down else "up", DOWN if said_down else "")
    except redis.RedisError:
        yield sse("down", DOWN)


DOWN = ("The live model is not running right now. Your message is saved and will be answered "
        "when it starts; you can also retry.")  # fmt: skip
