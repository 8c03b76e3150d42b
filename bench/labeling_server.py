"""The HTTP side of `bench_labeling.py --server gunicorn`: the production server started on the
bench database, and the keep-alive client each simulated labeler speaks to it with (as the TLS
proxy would). Standard library only: no Django in this module."""
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API = "/api/labeling"


class HttpResponse:
    def __init__(self, status: int, body: bytes):
        self.status_code, self.body = status, body

    def json(self):
        return json.loads(self.body) if self.body else {}


class HttpClient:
    """One labeler's keep-alive connection to the server, speaking as the TLS proxy would."""

    def __init__(self, token: str, host: str, port: int):
        self.connection = http.client.HTTPConnection(host, port, timeout=60)
        self.headers = {"Authorization": f"Token {token}", "X-Forwarded-Proto": "https",
                        "Content-Type": "application/json"}

    def post(self, url, data, content_type="application/json"):
        body = json.dumps(data).encode()
        for attempt in range(2):  # the server may have closed an idle keep-alive connection
            try:
                self.connection.request("POST", url, body=body, headers=self.headers)
                response = self.connection.getresponse()
                return HttpResponse(response.status, response.read())
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.connection.close()
                if attempt:
                    raise


def start_gunicorn(settings_dict) -> tuple[subprocess.Popen, tuple[str, int]]:
    """The production server on the bench database, on a free port: (its process, its address)
    once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = (f"postgres://{settings_dict['USER']}:{settings_dict['PASSWORD']}@"
           f"{settings_dict['HOST'] or 'localhost'}:{settings_dict['PORT'] or 5432}/"
           f"{settings_dict['NAME']}")
    env = {**os.environ, "DATABASE_URL": url, "GUNICORN_BIND": f"127.0.0.1:{port}",
           "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver"}
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_gunicorn_{port}.log"
    print(f"gunicorn on port {port}, its log in {log}")
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "webapp" / "gunicorn.conf.py"),
             "webapp.wsgi"], cwd=ROOT, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection_ = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection_.request("GET", f"{API}/projects/", headers={"X-Forwarded-Proto": "https"})
            if connection_.getresponse().status in (401, 403):  # up, and no token sent
                break
        except OSError:
            time.sleep(0.2)
    else:
        server.kill()
        raise RuntimeError("gunicorn did not start within 60 s")
    warm_up(port)
    return server, ("127.0.0.1", port)


def warm_up(port: int, requests: int = 200) -> None:
    """Every worker process loads its URLs, views and database connections before the clock
    starts (the first request of each costs a second or more)."""
    def hit(n):
        for _ in range(n):
            connection_ = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection_.request("GET", f"{API}/projects/", headers={"X-Forwarded-Proto": "https"})
            connection_.getresponse().read()
            connection_.close()

    threads = [threading.Thread(target=hit, args=(requests // 20,)) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
