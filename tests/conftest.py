"""Fixtures shared by every test folder: users, and real Celery workers on the real Redis."""
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
class WorkerProcess:
    """A `celery worker` subprocess on the test database, stopped by `stop()`."""

    name: str
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
    worker = WorkerProcess(name, process, log)
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


@pytest.fixture
def wait_for():
    """`wait_for(predicate, timeout)`: poll until a worker's effect shows (True) or give up."""

    def wait(predicate, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.2)
        return False

    return wait
