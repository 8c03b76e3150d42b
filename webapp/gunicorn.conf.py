"""gunicorn's settings for production: `gunicorn -c webapp/gunicorn.conf.py webapp.wsgi` (what
`make serve` runs, after collectstatic).

Workers sized to the cores: 2 x cores + 1 processes (gunicorn's rule of thumb), each with a few
threads, since a labeling request spends most of its time waiting for PostgreSQL. Each thread
keeps its own database connection (DATABASE_CONN_MAX_AGE), so PostgreSQL sees up to
workers x threads connections. Override with WEB_CONCURRENCY (processes), GUNICORN_THREADS and
GUNICORN_BIND.
"""
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", 2 * (os.cpu_count() or 1) + 1))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
keepalive = 5  # seconds an idle client connection stays open (behind a proxy: its pool)
timeout = 60  # a request longer than this (a large export) is killed and logged
graceful_timeout = 30
errorlog = "-"
