"""Load test of the labeling queue: N concurrent simulated labelers doing next task -> submit.

    DATABASE_URL=postgres://rlhf:rlhf@localhost:5432/rlhf \
        python bench/bench_labeling.py --labelers 50 --think-s 30 --completions 1000000

Each labeler is a thread with its own database connection and its own Django test client,
authenticating with an API token; threads are spread over a few processes so the Python GIL
does not serialize the whole app. Every request goes through the full stack (middleware,
DRF, token auth, services, PostgreSQL) in process, with production settings (DEBUG off, HTTPS):
no HTTP server, so network and a WSGI server are not measured. With `--server gunicorn` it
starts the production server instead (webapp/gunicorn.conf.py: 2 x cores + 1 processes) on the
throwaway database and every labeler speaks HTTP to it, one keep-alive connection each; the load
generator then shares the machine with the server and PostgreSQL. It runs in a throwaway
database (created, migrated, analyzed and dropped; --keep-db leaves it) and reports:

1. throughput and p50/p95/p99 latency of "next task" and "submit" for N labelers in two loads:
   a stress test with no think time (every labeler fires its next request at once: the most
   this machine serves), and a realistic one where a labeler spends --think-s seconds on
   average (30: reading a prompt and ordering K replies) between taking a task and submitting
   it, then takes the next one at once;
2. duplicate and lost submissions (target zero): every 201 answer must be one row, no task may
   hold more rankings than its overlap, counters must equal rows;
3. SQL queries per request and the CPU time a request costs this process (app and test client),
   on a small table and after loading --completions rows (both constant);
4. "next task" latency with --completions completions in the table (1 million by default),
   alone and under the same loads.
"""
import argparse
import multiprocessing as mp
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
# Production settings: DEBUG off (no query log, no debug pages), HTTPS from a TLS proxy.
os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only-" + os.urandom(24).hex())
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
os.environ.setdefault("DJANGO_SECURE_PROXY_SSL_HEADER", "1")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import close_old_connections, connection, connections  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from labeling_server import API, HttpClient, start_gunicorn  # noqa: E402

SERVER: tuple[str, int] | None = None  # (host, port) of a running gunicorn, set by --server


def api_client(token: str):
    """Through the HTTP server when one runs (--server gunicorn), else Django's test client."""
    return HttpClient(token, *SERVER) if SERVER else django_client(token)


def django_client(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {token}", HTTP_X_FORWARDED_PROTO="https")


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def summary(name, seconds):
    ms = [s * 1000 for s in seconds]
    return (f"{name:<22} n={len(ms):>6}  p50={percentile(ms, 50):7.1f} ms  "
            f"p95={percentile(ms, 95):7.1f} ms  p99={percentile(ms, 99):7.1f} ms  "
            f"mean={statistics.fmean(ms) if ms else float('nan'):6.1f} ms")


# --- setup -------------------------------------------------------------------------------------

def create_database(name: str):
    connection.settings_dict["TEST"] = {**connection.settings_dict.get("TEST", {}), "NAME": name}
    return connection.creation.create_test_db(
        verbosity=0, autoclobber=True, keepdb=False, serialize=False
    )


def make_world(*, labelers: int, tasks: int, k: int, overlap: int):
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from labeling.services.demonstrations import prompt_create
    from labeling.services.projects import project_create
    from labeling.services.ranking_tasks import ranking_tasks_create

    project = project_create(name="Bench", slug="bench", k=k, overlap=overlap)
    prompts = [
        prompt_create(project=project, turns=[{"role": "user", "content": f"Bench question {i}?"}],
                      source="imported", demonstrations_needed=0)
        for i in range(tasks)
    ]
    for start in range(0, tasks, 500):
        ranking_tasks_create(
            project=project, batch_key=f"bench-{start}",
            prompt_completions=[
                (p.pk, [{"text": f"Answer {j} to {p.pk}", "model_label": "bench"}
                        for j in range(k)])
                for p in prompts[start:start + 500]
            ],
        )
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"bench{i}", password="!") for i in range(labelers)]
    )
    tokens = [Token.objects.create(user=u).key for u in users]
    analyze()
    return project, tokens


def analyze():
    """Planner statistics, as autovacuum keeps them on a live database (labeling migration
    0002: after every 1000 changed rows of a queue table), done here by hand since a test
    server may run without autovacuum. A database never analyzed estimates "2 open tasks" and
    plans each claim as sort-every-open-task-then-pick."""
    with connection.cursor() as cur:
        cur.execute("ANALYZE")


def load_completions(project, total: int, k: int):
    """Bulk rows straight in SQL (PostgreSQL): total/k prompts, each with a complete task of k
    completions, so the queue has to find its open tasks among them."""
    n_prompts = total // k
    with connection.cursor() as cur:
        cur.execute("""
            INSERT INTO labeling_prompt (project_id, turns, text, content_hash, source,
                demonstrations_needed, demonstrations_count, created_at)
            SELECT %s, jsonb_build_array(jsonb_build_object('role', 'user',
                   'content', 'Filler question ' || g)),
                   'Filler question ' || g, md5(g::text), 'imported', 0, 0,
                   now() - interval '1 day'
            FROM generate_series(1, %s) g""", [project.pk, n_prompts])
        cur.execute("""
            INSERT INTO labeling_completion (prompt_id, text, model_label, sampling, created_at)
            SELECT p.id, 'Filler answer ' || i || ' to ' || p.id, 'filler', '{}'::jsonb,
                   p.created_at
            FROM labeling_prompt p CROSS JOIN generate_series(0, %s) i
            WHERE p.project_id = %s AND p.text LIKE 'Filler%%'""", [k - 1, project.pk])
        cur.execute("""
            INSERT INTO labeling_rankingtask (project_id, prompt_id, status, rankings_needed,
                rankings_count, priority, batch_key, created_at)
            SELECT project_id, id, 'complete', 1, 1, 0, 'filler', created_at
            FROM labeling_prompt WHERE project_id = %s AND text LIKE 'Filler%%'""", [project.pk])
        cur.execute("""
            INSERT INTO labeling_taskcompletion (task_id, completion_id, position)
            SELECT t.id, c.id, row_number() OVER (PARTITION BY t.id ORDER BY c.id) - 1
            FROM labeling_rankingtask t JOIN labeling_completion c ON c.prompt_id = t.prompt_id
            WHERE t.batch_key = 'filler'""")
        analyze()
        cur.execute("SELECT count(*) FROM labeling_completion")
        return cur.fetchone()[0]


# --- one simulated labeler ---------------------------------------------------------------------

def timed_post(client: Client, url: str, data) -> tuple:
    """One request and its latency. Afterwards the connection is handled as Django's request
    handler does (the test client skips it): closed unless CONN_MAX_AGE keeps it, so a
    reconnection lands in the next request's time, as in production."""
    t0 = time.perf_counter()
    response = client.post(url, data, content_type="application/json")
    seconds = time.perf_counter() - t0
    close_old_connections()
    return response, seconds


def labeler_loop(token: str, rounds: int, think: float, out: list, stop_when_empty=True):
    """next -> (think) -> submit, `rounds` times; think is the mean time spent on a task. The
    first request comes after a random part of it, so labelers do not arrive in step."""
    client = api_client(token)
    rng = random.Random(token)
    time.sleep(think * rng.random())
    try:
        for _ in range(rounds):
            r, seconds = timed_post(client, f"{API}/tasks/next/", {})
            out.append(("next", seconds, r.status_code, None))
            if r.status_code != 200:
                if r.status_code == 204 and not stop_when_empty:
                    continue
                return
            task = r.json()
            order = [[c["id"]] for c in reversed(task["completions"])]
            time.sleep(think * rng.uniform(0.5, 1.5))
            url = f"{API}/assignments/{task['id']}/ranking/"
            s, seconds = timed_post(client, url, {"order": order})
            ranking_id = s.json().get("id") if s.status_code == 201 else None
            out.append(("submit", seconds, s.status_code, ranking_id))
            if s.status_code == 201 and os.environ.get("BENCH_DOUBLE_SUBMIT"):
                again, _ = timed_post(client, url, {"order": order})
                out.append(("resubmit", 0.0, again.status_code, again.json().get("id")))
    finally:
        connections.close_all()


def process_main(tokens, rounds, think, queue):
    connections.close_all()  # never share the parent's sockets
    cpu = time.process_time()
    results: list = []
    threads = [threading.Thread(target=labeler_loop, args=(t, rounds, think, results))
               for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put((results, time.process_time() - cpu))


def run_load(tokens, rounds, processes, think=0.0):
    connections.close_all()
    queue = mp.get_context("fork").Queue()
    shards = [tokens[i::processes] for i in range(processes)]
    workers = [
        mp.get_context("fork").Process(target=process_main, args=(s, rounds, think, queue))
        for s in shards if s
    ]
    start = time.perf_counter()
    for w in workers:
        w.start()
    results, cpu = [], 0.0
    for _ in workers:
        shard_results, shard_cpu = queue.get()
        results += shard_results
        cpu += shard_cpu
    for w in workers:
        w.join()
    return results, time.perf_counter() - start, cpu


def report_load(title, results, elapsed, cpu):
    nexts = [d for kind, d, code, _ in results if kind == "next" and code == 200]
    submits = [d for kind, d, code, _ in results if kind == "submit" and code == 201]
    errors = [(kind, code) for kind, _, code, _ in results
              if (kind == "next" and code not in (200, 204)) or (kind == "submit" and code != 201)]
    print(f"\n== {title}")
    print(f"wall {elapsed:.1f} s, {len(submits)} rankings stored, "
          f"throughput {len(submits) / elapsed:.1f} rankings/s "
          f"({(len(nexts) + len(submits)) / elapsed:.1f} requests/s), errors: {len(errors)}, "
          f"CPU {1000 * cpu / max(1, len(results)):.1f} ms per request in this process")
    print(summary("next task", nexts))
    print(summary("submit", submits))
    print(summary("next+submit (pair)", [a + b for a, b in zip(nexts, submits, strict=False)]))
    ids = [rid for kind, _, code, rid in results if kind in ("submit", "resubmit") and rid]
    return ids, len(errors)


def check_integrity(ranking_ids):
    from django.db.models import Count

    from labeling.models import Assignment, Ranking, RankingTask

    stored = set(Ranking.objects.values_list("id", flat=True))
    answered = set(ranking_ids)
    lost = len(answered - stored)
    duplicate_pairs = (Ranking.objects.values("task", "labeler").annotate(n=Count("id"))
                       .filter(n__gt=1).count())
    tasks = RankingTask.objects.exclude(batch_key="filler").annotate(n=Count("rankings"))
    over = tasks.filter(n__gt=models_F("rankings_needed")).count()
    mismatched = tasks.exclude(n=models_F("rankings_count")).count()
    orphans = Assignment.objects.filter(status="submitted", ranking__isnull=True,
                                        kind="ranking").count()
    print(f"integrity: answered {len(answered)} ids, lost {lost}, duplicate (task, labeler) "
          f"{duplicate_pairs}, tasks over overlap {over}, counter mismatches {mismatched}, "
          f"submitted leases without a ranking {orphans}")
    return lost + duplicate_pairs + over + mismatched + orphans


def models_F(name):
    from django.db.models import F

    return F(name)


def queries_per_request(token):
    """SQL statements for one next-task and one submit through the API, plus the home page
    selector; the same numbers must come out on a small and a huge table."""
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from labeling import selectors

    client = django_client(token)  # in this process, where the queries can be counted
    with CaptureQueriesContext(connection) as next_q:
        r = client.post(f"{API}/tasks/next/", {}, content_type="application/json")
    if r.status_code != 200:
        return None
    task = r.json()
    order = [[c["id"]] for c in task["completions"]]
    with CaptureQueriesContext(connection) as submit_q:
        client.post(f"{API}/assignments/{task['id']}/ranking/", {"order": order},
                    content_type="application/json")
    user = get_user_model().objects.get(pk=Token.objects.get(key=token).user_id)
    with CaptureQueriesContext(connection) as home_q:
        selectors.labeler_home(labeler=user)
    return len(next_q), len(submit_q), len(home_q)


def next_latency_alone(tokens, n):
    """Sequential next-task calls (each lease then released) by one labeler at a time."""
    from labeling.services.queue import assignments_release

    samples = []
    for i in range(n):
        r, seconds = timed_post(api_client(tokens[i % len(tokens)]), f"{API}/tasks/next/", {})
        samples.append(seconds)
        if r.status_code == 200:
            assignments_release(assignment_ids=[r.json()["id"]])
    return samples


def phases(tokens, args, label):
    """The stress phase (no think time) and the realistic phase (--think-s per task)."""
    results, elapsed, cpu = run_load(tokens, args.rounds, args.processes)
    ids, bad = report_load(f"{len(tokens)} labelers, no think time, {label}", results, elapsed,
                           cpu)
    bad += check_integrity(ids)
    if args.think_s:
        results, elapsed, cpu = run_load(tokens, args.paced_rounds, args.processes, args.think_s)
        more, errors = report_load(f"{len(tokens)} labelers, {args.think_s:g} s per task, {label}",
                                   results, elapsed, cpu)
        ids += more
        bad += errors + check_integrity(ids)
    return ids, bad


def claim_query_ms(token) -> float:
    """Execution time PostgreSQL reports for the queue's SELECT ... FOR UPDATE SKIP LOCKED."""
    from django.db import transaction
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from labeling import selectors

    user = Token.objects.select_related("user").get(key=token).user
    qs = selectors.ranking_tasks_claimable(labeler=user, now=timezone.now())
    qs = qs.select_related("project", "prompt").select_for_update(skip_locked=True, of=("self",))
    with transaction.atomic(), connection.cursor() as cur:
        sql, params = qs[:1].query.sql_with_params()
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cur.fetchone()[0]
    plan = plan[0] if isinstance(plan, list) else plan
    return plan["Execution Time"] + plan.get("Planning Time", 0)


def main():
    global SERVER  # where api_client sends requests (the labelers' processes fork after it is set)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labelers", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=10,
                        help="tasks per labeler in the stress phase")
    parser.add_argument("--paced-rounds", type=int, default=4,
                        help="tasks per labeler in the think-time phase")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--overlap", type=int, default=2)
    parser.add_argument("--completions", type=int, default=1_000_000,
                        help="rows to load before the second phase (0: skip)")
    parser.add_argument("--think-s", type=float, default=30.0,
                        help="mean seconds a labeler spends on a task (0: skip that phase)")
    parser.add_argument("--processes", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--server", choices=["in-process", "gunicorn"], default="in-process",
                        help="gunicorn: requests over HTTP to the production server")
    args = parser.parse_args()

    if connection.vendor != "postgresql":
        print("note: not PostgreSQL; the numbers say little about production", file=sys.stderr)
    name = f"bench_labeling_{os.getpid()}"
    old_name = connection.settings_dict["NAME"]
    create_database(name)
    server = None
    if args.server == "gunicorn":
        server, SERVER = start_gunicorn(connection.settings_dict)
    try:
        per_phase = args.rounds + (args.paced_rounds if args.think_s else 0)
        tasks_needed = args.labelers * per_phase * 2 // args.overlap + args.labelers
        t0 = time.perf_counter()
        project, tokens = make_world(labelers=args.labelers, tasks=tasks_needed, k=args.k,
                                     overlap=args.overlap)
        print(f"database {name} on {connection.vendor}; {tasks_needed} open tasks of K={args.k},"
              f" overlap {args.overlap}, {args.labelers} labelers "
              f"({time.perf_counter() - t0:.1f} s to set up); {args.processes} processes, "
              f"DEBUG {settings.DEBUG}, CONN_MAX_AGE {connection.settings_dict['CONN_MAX_AGE']}, "
              f"server: {args.server}")
        small = queries_per_request(tokens[0])
        ids, bad = phases(tokens, args, "small tables")
        large = None
        if args.completions and connection.vendor == "postgresql":
            t0 = time.perf_counter()
            total = load_completions(project, args.completions, args.k)
            print(f"\nloaded filler: {total} completions in the table "
                  f"({time.perf_counter() - t0:.1f} s)")
            print(summary("next task, 1 labeler", next_latency_alone(tokens, 200)))
            print(f"claim query alone (EXPLAIN ANALYZE): {claim_query_ms(tokens[2]):.2f} ms")
            large = queries_per_request(tokens[1])
            more, problems = phases(tokens, args, f"{total} completions")
            ids += more
            bad += problems
        print(f"\nSQL queries per request (next, submit, home selector): small {small}, "
              f"large {large}")
        print("RESULT:", "OK" if bad == 0 else f"{bad} errors and integrity problems")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        connections.close_all()
        if not args.keep_db:
            connection.creation.destroy_test_db(old_name, verbosity=0)


if __name__ == "__main__":
    main()
