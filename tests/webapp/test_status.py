"""The status page and `manage.py health` tell staff whether work can flow, with real workers."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from waiting import wait_for

from webapp.celery import app
from webapp.models import WorkerHeartbeat
from webapp.services import heartbeat_request


def test_status_page_is_for_staff_only(client, labeler, staff):
    assert client.get("/status/").status_code == 302  # to the login page
    client.force_login(labeler)
    assert client.get("/status/").status_code == 302  # to the admin login, not the page
    client.force_login(staff)
    assert client.get("/status/").status_code == 200


@pytest.mark.worker
def test_a_real_worker_consumes_from_redis_and_writes_a_row(worker_factory):
    worker = worker_factory()
    beats = heartbeat_request()
    assert {b.queue for b in beats} == {"default", "training", "sampling"}

    def all_answered():
        return not WorkerHeartbeat.objects.filter(answered_at__isnull=True).exists()

    assert wait_for(all_answered), worker.output()
    assert set(WorkerHeartbeat.objects.values_list("worker", flat=True)) == {worker.name}


@pytest.mark.worker
def test_status_page_reports_a_stopped_worker_as_stopped(client, staff, worker_factory):
    client.force_login(staff)
    worker = worker_factory(queues=("default", "sampling"))
    page = client.get("/status/").content.decode()
    assert worker.name in page
    assert "default, sampling" in page

    worker.stop()
    page = client.get("/status/").content.decode()
    assert worker.name not in page
    assert "No worker is running" in page


@pytest.mark.worker
def test_health_command_fails_without_a_worker_and_passes_with_one(worker_factory, capsys):
    with pytest.raises(CommandError, match="workers"):
        call_command("health")
    worker_factory(queues=("training",))
    call_command("health")
    assert "serves: training" in capsys.readouterr().out


@pytest.mark.worker
def test_health_and_the_status_page_report_the_inference_worker(
    client, staff, worker_factory, inference_worker, capsys
):
    worker_factory(queues=("default",))
    call_command("health")  # the live model down is a warning, not a failure
    assert "WARN inference: no inference worker is running" in capsys.readouterr().out
    client.force_login(staff)
    assert "no inference worker is running" in client.get("/status/").text

    inference_worker()
    call_command("health")
    assert "ok   inference: inference@" in capsys.readouterr().out
    assert "on cpu, loaded: none yet" in client.get("/status/").text


@pytest.fixture
def redis_down(monkeypatch):
    """Point the Celery app at a port where nothing listens, and back afterwards."""
    dead = "redis://127.0.0.1:1/0"

    def point_at(url):
        # Celery reads CELERY_BROKER_URL from the environment before its own configuration,
        # and caches its connection and producer pools.
        monkeypatch.setenv("CELERY_BROKER_URL", url)
        app.conf.broker_url = url
        app.close()
        app.amqp._producer_pool = None

    real = app.conf.broker_url
    point_at(dead)
    yield
    point_at(real)


def test_with_redis_down_pages_render_and_say_so(client, staff, transactional_db, redis_down):
    client.force_login(staff)
    page = client.get("/status/")
    assert page.status_code == 200
    assert "unreachable" in page.content.decode()

    response = client.post("/status/heartbeat/", follow=True)
    assert response.status_code == 200
    assert "The task queue (Redis) is unreachable" in response.content.decode()
    assert not WorkerHeartbeat.objects.exists()  # nothing half-written
