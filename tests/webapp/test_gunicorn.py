"""The production server: gunicorn with webapp/gunicorn.conf.py starts with production settings,
sizes its workers to the cores and answers through the whole stack with the security headers."""
import http.client
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

from waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_gunicorn_serves_the_app_with_workers_sized_to_the_cores(tmp_path):
    port = free_port()
    env = {**os.environ, "DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
           "ALLOWED_HOSTS": "127.0.0.1", "DJANGO_SECURE_PROXY_SSL_HEADER": "1",
           "GUNICORN_BIND": f"127.0.0.1:{port}", "DATA_DIR": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}  # a 401 needs no table
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "webapp/gunicorn.conf.py", "webapp.wsgi"],
            cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        response = None
        deadline = time.monotonic() + 60
        while response is None and time.monotonic() < deadline and server.poll() is None:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request("GET", "/api/labeling/projects/",
                                   headers={"X-Forwarded-Proto": "https"})
                response = connection.getresponse()
            except OSError:
                time.sleep(0.3)
        assert response is not None, log.read_text()
        assert response.status == 401  # the API, through DRF's token auth: no token sent
        assert "script-src 'self'" in response.getheader("Content-Security-Policy")
        workers = 2 * os.cpu_count() + 1
        assert wait_for(lambda: log.read_text().count("Booting worker") == workers), \
            log.read_text()
    finally:
        server.terminate()
        server.wait(timeout=30)
