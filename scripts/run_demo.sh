#!/usr/bin/env bash
# The web server and one Celery worker together in the foreground; Ctrl-C stops both.
set -euo pipefail
host=${1:-127.0.0.1} port=${2:-8000}
bin=.venv/bin

trap 'trap - INT TERM EXIT; kill 0 2>/dev/null; wait' INT TERM EXIT
"$bin/celery" -A webapp worker -Q default,training,sampling --concurrency 1 \
  -n "demo@%h" --loglevel WARNING &
"$bin/python" manage.py runserver "$host:$port" --noreload &
printf '\nRLHF Loop is running: open http://%s:%s/  (Ctrl-C stops the server and the worker)\n\n' \
  "$host" "$port"
wait -n
