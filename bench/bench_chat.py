"""How the live model holds up with several people chatting at once.

Starts a real inference worker (`manage.py inference_worker`) on the shipped
SmolLM2-135M-Instruct, then runs 1, 4 and 16 simulated chats at once: each sends a message,
waits for the reply to finish, reads it for `--think` seconds and sends the next. Prints, per
level, the time to first token (p50/p95), tokens/s per stream and in total, and the total
tokens/s of the same requests served one at a time (the speedup continuous batching buys).

    .venv/bin/python bench/bench_chat.py [--chats 1 4 16] [--turns 2] [--max-new-tokens 48]

Targets (issue 15): first token p95 under 1 s at 4 chats; at least 3x the one-at-a-time total
tokens/s at 16 chats. Uses a temporary SQLite database and Redis database 9 (`--redis`).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "How do I reverse a list in Python?", "What does dict.get return when the key is missing?",
    "Explain what a generator is.", "How do I read a file line by line?",
    "What is the difference between a tuple and a list?", "How do I sort a dict by value?",
    "What does enumerate do?", "How can I merge two dictionaries?",
    "What is a lambda?", "How do I check if a string is a number?",
    "What does zip do?", "How do I remove duplicates from a list?",
    "What is list comprehension?", "How do I format a float with two decimals?",
    "What does the with statement do?", "How do I get the current date?",
]  # fmt: skip
FOLLOW_UPS = ["Can you show a short example?", "Is there a faster way?", "Why does that work?"]


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chats", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--think", type=float, default=0.5, help="seconds between turns")
    parser.add_argument("--threads", type=int, default=0, help="torch threads of the worker")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                        help="the worker's precision (SAMPLING_DTYPE)")
    parser.add_argument("--prefill-chunk", type=int, default=None,
                        help="the worker's prompt tokens per step (INFERENCE_PREFILL_CHUNK)")
    parser.add_argument("--prefix-cache-tokens", type=int, default=None,
                        help="the worker's kept reply tokens (INFERENCE_PREFIX_CACHE_TOKENS)")
    parser.add_argument("--redis", default="redis://localhost:6379/9")
    args = parser.parse_args()

    data = tempfile.mkdtemp(prefix="bench-chat-")
    os.environ.update(DJANGO_DEBUG="1", DATA_DIR=data, DATABASE_URL=f"sqlite:///{data}/db.sqlite3",
                      CELERY_BROKER_URL=args.redis, INFERENCE_REDIS_URL=args.redis,
                      SAMPLING_DTYPE=args.dtype,
                      DJANGO_SETTINGS_MODULE="webapp.settings")  # fmt: skip
    import django

    django.setup()
    from django.core.management import call_command

    from training.inference import channel
    from training.ml.shipped import SHIPPED_NAME, shipped_model_path
    from training.models import Generation
    from training.services.generations import generation_request
    from training.services.model_versions import model_version_import

    call_command("migrate", verbosity=0)
    version = model_version_import(path=str(shipped_model_path()), name=SHIPPED_NAME)
    r = channel.connect()
    r.delete(channel.REQUESTS, *r.scan_iter(match="inference:*"))
    command = [sys.executable, "manage.py", "inference_worker", "--max-batch", "16"]
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.prefill_chunk is not None:
        command += ["--prefill-chunk", str(args.prefill_chunk)]
    if args.prefix_cache_tokens is not None:
        command += ["--prefix-cache-tokens", str(args.prefix_cache_tokens)]
    worker = subprocess.Popen(command, cwd=ROOT, env=os.environ.copy(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        while not channel.workers(r):
            if worker.poll() is not None:
                sys.exit("the inference worker did not start")
            time.sleep(0.2)
        sampling = {"temperature": 0.7, "max_new_tokens": args.max_new_tokens}

        def ask(turns, seed):
            """(seconds to first token, seconds to the end, tokens) of one reply."""
            started = time.monotonic()
            generation = generation_request(model_version=version, turns=turns,
                                            sampling={**sampling, "seed": seed})  # fmt: skip
            first, after = None, "0"
            while True:
                for event_id, fields in channel.read_events(r, generation.key, after, 1000):
                    after = event_id
                    if first is None and fields["type"] in ("token", "done"):
                        first = time.monotonic() - started
                    if fields["type"] in ("done", "error"):
                        generation.refresh_from_db()
                        tokens = generation.completion_tokens
                        return first, time.monotonic() - started, tokens, generation.text

        def chat(n, results):
            turns = [{"role": "user", "content": QUESTIONS[n % len(QUESTIONS)]}]
            for t in range(args.turns):
                first, total, tokens, text = ask(turns, seed=n * 100 + t)
                results.append((first, total, tokens))
                turns += [{"role": "assistant", "content": text},
                          {"role": "user", "content": FOLLOW_UPS[t % len(FOLLOW_UPS)]}]  # fmt: skip
                time.sleep(args.think)

        ask([{"role": "user", "content": "Hello"}], seed=0)  # load the model once
        print(f"{SHIPPED_NAME} ({args.dtype}, {args.threads or 'default'} threads), {args.turns} "
              f"turns per chat, {args.max_new_tokens} new tokens at most, {args.think}s between "
              f"turns; load average {os.getloadavg()[0]:.1f}\n")  # fmt: skip
        print(f"{'chats':>5} {'ttft p50':>9} {'ttft p95':>9} {'tok/s/stream':>13} "
              f"{'tok/s total':>12} {'one at a time':>14} {'speedup':>8}")  # fmt: skip
        for chats in args.chats:
            together: list = []
            threads = [threading.Thread(target=chat, args=(n, together)) for n in range(chats)]
            started = time.monotonic()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.monotonic() - started - args.think * args.turns
            alone: list = []
            started = time.monotonic()
            for n in range(chats):
                chat(n, alone)
            wall_alone = time.monotonic() - started - args.think * args.turns * chats
            firsts = [f for f, _, _ in together]
            per_stream = statistics.mean(t / max(total - f, 1e-9) for f, total, t in together)
            total_rate = sum(t for _, _, t in together) / wall
            alone_rate = sum(t for _, _, t in alone) / wall_alone
            print(f"{chats:>5} {percentile(firsts, 0.5):>8.2f}s {percentile(firsts, 0.95):>8.2f}s "
                  f"{per_stream:>13.1f} {total_rate:>12.1f} {alone_rate:>14.1f} "
                  f"{total_rate / alone_rate:>7.1f}x")  # fmt: skip
        print(f"\n{Generation.objects.count()} replies served")
    finally:
        worker.terminate()
        worker.wait()


if __name__ == "__main__":
    main()
