"""Every command line in the README runs as printed on a fresh clone: no variables set, no
`make`, a new data folder. Commands that only read or sweep a fresh database run for real; the
ones that train, import or need a worker show that they start (`--help` after the printed
arguments: settings load, the command exists)."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_FOR_REAL = {"expire_leases", "continue_round", "mark_stale_runs"}


def readme_commands() -> list[list[str]]:
    lines = []
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith(".venv/bin/"):
            lines.append(line.split("#")[0].split())
    return lines


def run(args, data_dir):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO", "DATABASE", "CELERY", "REDIS"))}
    env["DATA_DIR"] = str(data_dir)
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_every_readme_command_runs_on_a_fresh_clone(tmp_path):
    commands = readme_commands()
    assert len(commands) >= 12  # the README's command list was found
    migrated = run([sys.executable, "manage.py", "migrate", "--noinput"], tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    for words in commands:
        program, rest = words[0], words[1:]
        if program.endswith("/celery"):
            args = [sys.executable, "-m", "celery", *rest, "--help"]
        elif rest[:1] == ["manage.py"] and rest[1] in RUN_FOR_REAL:
            args = [sys.executable, *rest]
        else:
            args = [sys.executable, *rest, "--help"]
        result = run(args, tmp_path)
        assert result.returncode == 0, f"{' '.join(words)}\n{result.stderr[-2000:]}"
        assert not re.search(r"DJANGO_SECRET_KEY|Traceback", result.stderr), result.stderr
