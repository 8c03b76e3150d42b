"""Fixtures shared by every test folder: users, real Celery workers on the real Redis, and a
headless Chromium page on the live server for the browser tests."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
WORKER_START_TIMEOUT = 60


@pytest.fixture
def labeler(db):
    return get_user_model().objects.create_user("lena", password="pw-lena-123")


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("sam", password="pw-sam-123", is_staff=True)


def database_url(settings_dict) -> str:
    """The URL of the database the tests use, for a worker process started from a test."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    return (
        f"postgres://{settings_dict['USER']}:{settings_dict['PASSWORD']}"
        f"@{settings_dict['HOST'] or 'localhost'}:{settings_dict['PORT'] or 5432}"
        f"/{settings_dict['NAME']}"
    )


@dataclass
class ChildProcess:
    """A worker subprocess a test started, with its log; stopped by `stop()`."""

    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as when a machine dies: no warm shutdown, no cleanup."""
        self.process.kill()
        self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class WorkerProcess(ChildProcess):
    """A `celery worker` subprocess on the test database."""

    name: str = ""


def start_worker(tmp_path: Path, *, queues=("default", "training", "sampling"), env=None):
    from webapp.celery import app

    name = f"test-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
    log = tmp_path / f"{name.split('@')[0]}.log"
    worker_env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": app.conf.broker_url,
        **(env or {}),
    }
    command = [
        sys.executable, "-m", "celery", "-A", "webapp", "worker", "--concurrency", "1",
        "-Q", ",".join(queues), "-n", name, "--without-mingle", "--without-gossip",
        "--loglevel", "INFO",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=worker_env, stdout=out, stderr=out)
    worker = WorkerProcess(process, log, name=name)
    deadline = time.monotonic() + WORKER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited at start:\n{worker.output()}")
        if app.control.ping(destination=[name], timeout=0.5):
            return worker
    worker.stop()
    raise RuntimeError(f"worker did not answer within {WORKER_START_TIMEOUT}s:\n{worker.output()}")


@pytest.fixture
def worker_factory(transactional_db, tmp_path):
    """Start real workers inside a test; every one still running is stopped afterwards."""
    started = []

    def start(**kwargs):
        worker = start_worker(tmp_path, **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium (`CHROMIUM_PATH`, default /usr/bin/chromium) driven by Playwright;
    Playwright's own browser download does not work offline."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make
    # between browser steps are ordinary synchronous code, so Django's guard is lifted here.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
            args=CHROMIUM_ARGS,
        )
        yield browser
        browser.close()
    if previous is None:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context on the live server; any JavaScript error fails the test."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1200, "height": 900})
    context.set_default_timeout(5000)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture
def inference_redis(settings):
    """The live model's Redis, emptied of other tests' requests and worker heartbeats."""
    from webapp.celery import app

    settings.INFERENCE_REDIS_URL = app.conf.broker_url
    from training.inference import channel

    r = channel.connect()
    r.delete(channel.REQUESTS, *r.scan_iter(match="inference:*"))
    return r


@pytest.fixture
def inference_worker(transactional_db, inference_redis, settings, tmp_path):
    """`start()` runs a real inference worker and waits for its first heartbeat."""
    from training.inference import channel

    started = []

    def start() -> ChildProcess:
        env = {**os.environ, "DATABASE_URL": database_url(connection.settings_dict),
               "INFERENCE_REDIS_URL": settings.INFERENCE_REDIS_URL}  # fmt: skip
        log = tmp_path / f"inference-{len(started)}.log"
        command = [sys.executable, "manage.py", "inference_worker", "--threads", "1",
                   "--device", "cpu"]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
        worker = ChildProcess(process, log)
        started.append(worker)
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"inference worker exited at start:\n{worker.output()}")
            if channel.workers(inference_redis):
                return worker
            time.sleep(0.2)
        worker.stop()
        raise RuntimeError(f"inference worker did not beat within {WORKER_START_TIMEOUT}s")

    yield start
    for worker in started:
        worker.stop()
    inference_redis.delete(channel.REQUESTS, *inference_redis.scan_iter(match="inference:*"))

