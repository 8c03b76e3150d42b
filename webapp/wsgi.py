"""WSGI entry point for a production server (gunicorn webapp.wsgi).

Behind reverse proxies (`DJANGO_PROXY_COUNT` of them, each appending to X-Forwarded-For), the
address a request came from is the one the outermost trusted proxy saw, not the proxy's own:
werkzeug's ProxyFix puts it in REMOTE_ADDR, so the login limit counts failures per person's
address rather than locking everyone behind the proxy out together. Addresses a client writes
into the header itself, left of the trusted ones, are ignored.
"""
import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from werkzeug.middleware.proxy_fix import ProxyFix

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")


def behind_proxies(app, count: int):
    return ProxyFix(app, x_for=count, x_proto=0, x_host=0, x_port=0, x_prefix=0) if count else app


application = behind_proxies(get_wsgi_application(), settings.PROXY_COUNT)
