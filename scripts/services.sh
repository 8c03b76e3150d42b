#!/usr/bin/env bash
# Make sure a service the project needs is running: start it when installed, install it with
# apt-get when missing and allowed (root or passwordless sudo, and NO_INSTALL unset), otherwise
# stop with one line saying what to run. Safe to run again: it changes nothing that is right.
#   scripts/services.sh redis | postgres | chromium
set -euo pipefail

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif sudo -n true 2>/dev/null; then sudo -n "$@"; else return 1; fi
}

apt_install() {
  [ -z "${NO_INSTALL:-}" ] || return 1
  command -v apt-get >/dev/null || return 1
  say "installing $* with apt-get ..."
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

redis_up() { redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
  REDIS_HOST=127.0.0.1 REDIS_PORT=6379
  if command -v redis-cli >/dev/null && redis_up; then return; fi
  if ! command -v redis-server >/dev/null; then
    apt_install redis-server || die "Redis is not installed: run 'sudo apt-get install redis-server'"
  fi
  say "starting redis-server on $REDIS_HOST:$REDIS_PORT ..."
  mkdir -p "${TMPDIR:-/tmp}/rlhf-redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "${TMPDIR:-/tmp}/rlhf-redis" --logfile "${TMPDIR:-/tmp}/rlhf-redis/redis.log" >/dev/null
  for _ in $(seq 50); do redis_up && return; sleep 0.1; done
  die "redis-server did not start: see ${TMPDIR:-/tmp}/rlhf-redis/redis.log"
}

# The test database role: PG_USER / PG_PASSWORD (default rlhf / rlhf), allowed to create the
# test database. Skipped when that role can already log in.
ensure_postgres() {
  local user=${PG_USER:-rlhf} password=${PG_PASSWORD:-rlhf}
  if ! command -v pg_isready >/dev/null; then
    apt_install postgresql || die "PostgreSQL is not installed: run 'sudo apt-get install postgresql'"
  fi
  if ! pg_isready -q -h localhost; then
    say "starting PostgreSQL ..."
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [ -n "$version" ] || die "no PostgreSQL cluster found: run 'sudo pg_createcluster --start 15 main'"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start ||
      die "could not start PostgreSQL: run 'sudo pg_ctlcluster $version main start'"
    for _ in $(seq 50); do pg_isready -q -h localhost && break; sleep 0.2; done
  fi
  if PGPASSWORD=$password psql -h localhost -U "$user" -d postgres -tAc 'select 1' >/dev/null 2>&1; then
    return
  fi
  say "creating the PostgreSQL role $user ..."
  local sql="CREATE ROLE $user LOGIN CREATEDB PASSWORD '$password'"
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- psql -q -c "$sql" >/dev/null
  else
    sudo -n -u postgres psql -q -c "$sql" >/dev/null ||
      die "cannot create the role: run sudo -u postgres psql -c \"$sql\""
  fi
}

ensure_chromium() {
  command -v chromium >/dev/null && return
  apt_install chromium || die "Chromium is not installed: run 'sudo apt-get install chromium'"
}

case "${1:-}" in
  redis) ensure_redis ;;
  postgres) ensure_postgres ;;
  chromium) ensure_chromium ;;
  *) die "usage: scripts/services.sh redis|postgres|chromium" ;;
esac
