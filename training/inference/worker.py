"""The inference worker: one loop that takes generation requests from Redis, serves them with
one continuous-batching `Engine` per loaded model version, and streams each reply's text back.

A process of its own (`manage.py inference_worker`) rather than a Celery worker: Celery runs
one task per pool process, so requests could never share a forward pass, and a request that
arrives mid-generation could not join the batch. One loop owning the models can do both.

Nothing is lost when it stops: a request is acknowledged on the Redis stream only once its
text is in the database, so a killed worker's requests are taken again when it (or another
worker) starts; their partial text is discarded with a "reset" event and generated anew.
"""

import logging
import threading
import time
from dataclasses import dataclass, field

import redis
import torch

from training.inference import channel
from training.inference.loaded import LoadedModels
from training.ml.engine import Engine, Event, Request
from training.ml.text_stream import TextStream
from training.ml.tokenizer import ChatTokenizer
from training.models import Generation
from training.services import generations

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
IDLE_BLOCK_MS = 500
CLAIM_IDLE_MS = 30_000  # a request pending this long on a silent worker is taken over


class ContextTooSmall(ValueError):
    """Even the last user turn alone leaves no room for a reply in the model's context."""


def fit_prompt(
    tokenizer: ChatTokenizer, turns: list[dict], *, context: int, max_new_tokens: int
) -> tuple[list[int], int, int]:
    """(prompt ids, turns dropped, tokens the reply may take) for `turns` in a model whose
    context is `context` tokens: the oldest exchanges (a user turn and its reply) are left out
    until the prompt leaves room for the reply (at least half the context when the reply asks
    for more), the system turn and the last user turn always kept."""
    reserve = min(max_new_tokens, context // 2)
    start = 1 if turns and turns[0].get("role") == "system" else 0
    dropped = 0
    while True:
        ids = tokenizer.render_prompt(turns)
        if len(ids) + reserve <= context:
            return ids, dropped, min(max_new_tokens, context - len(ids))
        if len(turns) - start <= 1:
            raise ContextTooSmall(
                f"the message is too long for this model: {len(ids)} tokens, and its context "
                f"holds {context} including the reply"
            )
        turns = turns[:start] + turns[start + 2 :]
        dropped += 2


@dataclass
class Serving:
    """A generation being written: the tokens the engine has produced and their text."""

    generation: Generation
    stream: TextStream
    message_id: str
    tokens: list[int] = field(default_factory=list)


class InferenceWorker:
    def __init__(self, *, device: torch.device, dtype: torch.dtype, memory_mb: float,
                 max_batch: int, prefill_chunk: int = 0, prefix_cache_tokens: int = 0,
                 name: str | None = None):  # fmt: skip
        self.name = name or channel.worker_name()
        self.device = device
        self.models = LoadedModels(device=device, dtype=dtype, memory_mb=memory_mb)
        self.max_batch, self.prefill_chunk = max_batch, prefill_chunk
        self.prefix_cache_tokens = prefix_cache_tokens
        self.engines: dict[int, Engine] = {}  # model version id -> its engine
        self.serving: dict[str, Serving] = {}  # generation key -> its state
        self.redis = channel.connect()
        self._beat_at = 0.0
        self._own_pending_read = False

    def run(self, stop: threading.Event) -> None:
        channel.ensure_group(self.redis)
        self._own_pending_read = False
        log.info("inference worker %s on %s", self.name, self.device)
        while not stop.is_set():
            self.beat()
            busy = any(engine.busy for engine in self.engines.values())
            for message_id, key in self.take(block_ms=0 if busy else IDLE_BLOCK_MS):
                try:
                    self.accept(message_id, key)
                except (redis.ConnectionError, KeyboardInterrupt):
                    raise
                except Exception:  # one bad request must not stop everyone's replies
                    log.exception("request %s could not be served", key)
            for engine in list(self.engines.values()):
                if engine.busy:
                    self.handle(engine.step())
        log.info("inference worker %s stopping; unfinished requests stay queued", self.name)

    def beat(self) -> None:
        if time.monotonic() - self._beat_at >= HEARTBEAT_SECONDS:
            info = channel.WorkerInfo(self.name, self.models.names(), str(self.device))
            channel.beat(self.redis, info)
            self._beat_at = time.monotonic()

    def take(self, block_ms: int) -> list[tuple[str, str]]:
        """Requests to serve: first those this worker held when it last stopped, then those a
        silent worker held too long, then new ones."""
        if not self._own_pending_read:
            self._own_pending_read = True
            reply = self.redis.xreadgroup(channel.GROUP, self.name, {channel.REQUESTS: "0"})
            if mine := [m for _, messages in reply for m in messages]:
                return [(message_id, fields["key"]) for message_id, fields in mine]
        _, claimed, *_ = self.redis.xautoclaim(
            channel.REQUESTS, channel.GROUP, self.name, min_idle_time=CLAIM_IDLE_MS, count=16
        )
        claimed = [(m, f["key"]) for m, f in claimed if f and f.get("key") not in self.serving]
        reply = self.redis.xreadgroup(channel.GROUP, self.name, {channel.REQUESTS: ">"},
                                      count=self.max_batch, block=block_ms or None)  # fmt: skip
        return claimed + [(m, f["key"]) for _, messages in reply or [] for m, f in messages]

    def accept(self, message_id: str, key: str) -> None:
        generation = (Generation.objects.select_related("model_version")
                      .filter(key=key).first())  # fmt: skip
        if generation is None or generation.status in Generation.FINISHED or key in self.serving:
            self.redis.xack(channel.REQUESTS, channel.GROUP, message_id)  # nothing (more) to do
            return
        version = generation.model_version
        try:
            in_use = {pk for pk, engine in self.engines.items() if engine.busy}
            loaded = self.models.get(version, in_use=in_use)
            ids, dropped, max_new = fit_prompt(
                loaded.tokenizer, generation.turns, context=loaded.model.config.block_size,
                max_new_tokens=generation.sampling.get("max_new_tokens", 256),
            )  # fmt: skip
        except ValueError as exc:
            self.fail(generation, message_id, str(exc))
            return
        engine = self.engines.get(version.pk)
        if engine is None or engine.model is not loaded.model:
            engine = Engine(loaded.model, stop_id=loaded.tokenizer.end_id,
                            pad_id=loaded.tokenizer.pad_id, max_batch=self.max_batch,
                            prefill_chunk=self.prefill_chunk,
                            prefix_cache_tokens=self.prefix_cache_tokens)  # fmt: skip
            self.engines[version.pk] = engine
        retaken = generation.status == Generation.Status.RUNNING
        if not generations.generation_start(generation, prompt_tokens=len(ids),
                                            dropped_turns=dropped):  # fmt: skip
            self.redis.xack(channel.REQUESTS, channel.GROUP, message_id)
            return
        if retaken:  # a worker died mid-reply: the client drops what it showed
            channel.publish(self.redis, key, "reset")
        sampling = generation.sampling
        engine.add(Request(
            key, ids, max_new_tokens=max_new, temperature=sampling.get("temperature", 0.7),
            top_p=sampling.get("top_p", 0.95), seed=sampling.get("seed", 0),
        ))  # fmt: skip
        self.serving[key] = Serving(generation, TextStream(loaded.tokenizer), message_id)
        self.engines = {pk: e for pk, e in self.engines.items()
                        if e.busy or pk in self.models.models}  # fmt: skip

    def handle(self, events: list[Event]) -> None:
        for event in events:
            serving = self.serving.get(event.key)
            if serving is None:
                continue
            try:
                self.relay(serving, event)
            except redis.ConnectionError:
                raise
            except Exception as exc:  # one reply's failure must not stop the others
                log.exception("reply %s failed", event.key)
                self.engines_cancel(event.key)
                self.serving.pop(event.key, None)
                try:
                    self.fail(serving.generation, serving.message_id, f"the reply failed: {exc}")
                except Exception:  # the database is down too: the request stays pending
                    log.exception("reply %s: could not record the failure", event.key)

    def engines_cancel(self, key: str) -> None:
        for engine in self.engines.values():
            engine.cancel(key)

    def relay(self, serving: Serving, event: Event) -> None:
        """Stream the text an event adds (only whole characters: a token may end inside one);
        finish the reply on its last event."""
        if not serving.tokens:
            generations.generation_first_token(serving.generation)
        text = ""
        if event.finish_reason != "stop":
            serving.tokens.append(event.token)
            text = serving.stream.add(event.token)
        if event.done:
            text += serving.stream.end()
        text = storable(text)
        if text:
            channel.publish(self.redis, event.key, "token", text)
        if event.done:
            self.finish(serving, event.finish_reason)

    def finish(self, serving: Serving, finish_reason: str) -> None:
        key = str(serving.generation.key)
        text = storable(serving.stream.text).strip()
        generations.generation_finish(serving.generation, text=text, finish_reason=finish_reason,
                                      completion_tokens=len(serving.tokens))  # fmt: skip
        channel.publish(self.redis, key, "done", text)
        self.redis.xack(channel.REQUESTS, channel.GROUP, serving.message_id)
        del self.serving[key]

    def fail(self, generation: Generation, message_id: str, error: str) -> None:
        log.warning("generation %s failed: %s", generation.key, error)
        generations.generation_fail(generation, error)
        channel.publish(self.redis, generation.key, "error", error)
        self.redis.xack(channel.REQUESTS, channel.GROUP, message_id)


def run_until_stopped(worker: InferenceWorker, stop: threading.Event) -> None:
    """Run, riding out Redis restarts: the page reports the worker down meanwhile."""
    while not stop.is_set():
        try:
            worker.run(stop)
        except redis.ConnectionError as exc:
            log.warning("Redis unreachable (%s); retrying in 2 s", exc)
            stop.wait(2)


def storable(text: str) -> str:
    """A model's text without NUL, which PostgreSQL's text columns refuse and a browser's text box
    drops: what the page streams is then exactly what the Generation row stores."""
    return text.replace("\x00", "")
