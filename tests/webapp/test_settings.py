"""Settings come from the environment; production values pass `check --deploy`."""
import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRINT_SETTINGS = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps([s.DEBUG, s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'],"
    " s.CELERY_BROKER_URL, s.ALLOWED_HOSTS, str(s.ARTIFACTS_DIR)]))"
)


def run_with_env(args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "DATABASE"))}
    clean.pop("CELERY_BROKER_URL", None)
    clean.update(env, DJANGO_SETTINGS_MODULE="webapp.settings")
    return subprocess.run(args, cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)


def test_settings_load_from_the_environment(tmp_path):
    result = run_with_env(
        [sys.executable, "-c", PRINT_SETTINGS],
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DATABASE_URL="postgres://u:p@db.internal:5433/rlhf",
        CELERY_BROKER_URL="redis://cache.internal:6380/2",
        ALLOWED_HOSTS="rlhf.example.com,api.example.com",
        ARTIFACTS_DIR=str(tmp_path / "art"),
    )
    assert result.returncode == 0, result.stderr
    import json

    debug, engine, name, broker, hosts, artifacts = json.loads(result.stdout)
    assert debug is False
    assert engine == "django.db.backends.postgresql" and name == "rlhf"
    assert broker == "redis://cache.internal:6380/2"
    assert hosts == ["rlhf.example.com", "api.example.com"]
    assert artifacts == str(tmp_path / "art")


def test_postgresql_connections_are_kept_between_requests_unless_told_not_to():
    show = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.DATABASES['default']['CONN_MAX_AGE'])")
    url = "postgres://u:p@db.internal:5433/rlhf"
    kept = run_with_env([sys.executable, "-c", show], DJANGO_DEBUG="1", DATABASE_URL=url)
    assert kept.stdout.strip() == "60", kept.stderr
    per_request = run_with_env([sys.executable, "-c", show], DJANGO_DEBUG="1", DATABASE_URL=url,
                               DATABASE_CONN_MAX_AGE="0")
    assert per_request.stdout.strip() == "0", per_request.stderr


def test_sqlite_is_the_default_and_tuned_for_concurrent_writers(tmp_path):
    result = run_with_env(
        [sys.executable, "-c", "import django; django.setup(); from django.db import connection;"
         " c = connection.cursor(); c.execute('PRAGMA journal_mode'); print(c.fetchone()[0]);"
         " print(connection.settings_dict['NAME'])"],
        DJANGO_DEBUG="1",
        DATA_DIR=str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    mode, name = result.stdout.split()
    assert mode == "wal"
    assert name == str(tmp_path / "db.sqlite3")


def test_production_values_pass_check_deploy(tmp_path):
    result = run_with_env(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="rlhf.example.com",
        DATA_DIR=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_with_nothing_set_commands_run_in_development_mode(tmp_path):
    """A fresh clone: `manage.py ...` as printed in the README, no variables, no make."""
    result = run_with_env([sys.executable, "-c", PRINT_SETTINGS], DATA_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[true, ")  # DEBUG, localhost only
    assert '["localhost", "127.0.0.1", "[::1]"]' in result.stdout
    # A secret key alone means production: no silent debugging with a real key.
    key = secrets.token_urlsafe(50)
    result = run_with_env([sys.executable, "-c", PRINT_SETTINGS], DATA_DIR=str(tmp_path),
                          DJANGO_SECRET_KEY=key, ALLOWED_HOSTS="example.org")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("[false, ")
    # check --deploy on a deployment that forgot everything says debugging is on.
    result = run_with_env([sys.executable, "manage.py", "check", "--deploy"],
                          DATA_DIR=str(tmp_path))
    assert "DEBUG" in result.stdout + result.stderr


def test_a_bad_variable_is_one_line_naming_it(tmp_path):
    for env, name in [
        ({"DJANGO_DEBUG": "perhaps"}, "DJANGO_DEBUG"),
        ({"DJANGO_DEBUG": "0"}, "DJANGO_SECRET_KEY"),
        ({"DJANGO_DEBUG": "1", "DATABASE_URL": "mongo://x/y"}, "DATABASE_URL"),
        ({"DJANGO_DEBUG": "1", "CELERY_VISIBILITY_TIMEOUT": "soon"}, "CELERY_VISIBILITY_TIMEOUT"),
    ]:
        result = run_with_env(
            [sys.executable, "manage.py", "check"], DATA_DIR=str(tmp_path), **env
        )
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0], result.stderr
