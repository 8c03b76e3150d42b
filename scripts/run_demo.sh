#!/usr/bin/env bash
# The web server, one Celery worker and the inference worker (the live model for chat) together
# in the foreground; Ctrl-C stops them all. The Celery worker also runs beat (-B): the demo's only
# worker, so the periodic tasks run exactly once.
set -euo pipefail
host=${1:-127.0.0.1} port=${2:-8000}
bin=.venv/bin
data=${DATA_DIR:-data}
mkdir -p "$data"

trap 'trap - INT TERM EXIT; kill 0 2>/dev/null; wait' INT TERM EXIT
"$bin/celery" -A webapp worker -B -s "$data/celerybeat-schedule" \
  -Q default,training,sampling --concurrency 1 -n "demo@%h" --loglevel WARNING &
"$bin/python" manage.py inference_worker &
"$bin/python" manage.py runserver "$host:$port" --noreload &
printf '\nRLHF Loop is running: open http://%s:%s/  (Ctrl-C stops the server and the workers)\n\n' \
  "$host" "$port"
wait -n
