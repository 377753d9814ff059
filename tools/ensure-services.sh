#!/usr/bin/env bash
# Make sure the local services named as arguments (redis, postgres) answer on 127.0.0.1, and
# that the programs named (prometheus, alertmanager, wrk) are installed.
#
# For each: use it if it already answers; start it if installed but stopped; install it with
# apt-get if missing and we are allowed (root or sudo, ALLOW_INSTALL is not 0); otherwise stop
# with a message saying what to install. Redis started here runs with an append-only file and
# noeviction (queued writes must survive a restart and never be evicted).
set -euo pipefail

REDIS_PORT="${LOCAL_REDIS_PORT:-6379}"
PG_PORT="${LOCAL_POSTGRES_PORT:-5432}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
APT_UPDATED=0

say() { echo "ensure-services: $*" >&2; }
die() { say "$*"; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi
}

apt_install() {
  [ "${ALLOW_INSTALL:-1}" != 0 ] || return 1
  command -v apt-get >/dev/null || return 1
  if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -qq || return 1; APT_UPDATED=1; fi
  say "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # wait_for <seconds> <command...>
  local limit=$1; shift
  for _ in $(seq 1 $((limit * 5))); do "$@" && return 0; sleep 0.2; done
  return 1
}

redis_answers() {
  if command -v redis-cli >/dev/null; then
    [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
  else
    tcp_open "$REDIS_PORT"
  fi
}

ensure_redis() {
  redis_answers && return 0
  if ! command -v redis-server >/dev/null; then
    apt_install redis-server || die "Redis is not installed and could not be installed here. Install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) or set REDIS_URL."
  fi
  mkdir -p "$ROOT/var/redis"
  say "starting redis-server on 127.0.0.1:$REDIS_PORT (data in var/redis)"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
    --dir "$ROOT/var/redis" --logfile "$ROOT/var/redis/redis.log" \
    --appendonly yes --appendfsync everysec --maxmemory-policy noeviction --save ""
  wait_for 10 redis_answers || die "redis-server did not answer; see var/redis/redis.log"
}

pg_answers() {
  if command -v pg_isready >/dev/null; then
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT"
  else
    tcp_open "$PG_PORT"
  fi
}

ensure_postgres() {
  pg_answers && return 0
  local installed_now=0
  if ! command -v pg_ctlcluster >/dev/null && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install postgresql || die "PostgreSQL is not installed and could not be installed here. Install it (Debian/Ubuntu: apt-get install postgresql) or set TEST_POSTGRES_ADMIN_URL to a server the tests may create databases on."
    installed_now=1
  fi
  command -v pg_ctlcluster >/dev/null || die "PostgreSQL is installed but not through Debian's cluster tools; start it yourself on 127.0.0.1:$PG_PORT."
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  [ -n "$version" ] || die "no PostgreSQL cluster found under /etc/postgresql"
  if [ "$installed_now" = 1 ]; then
    # A cluster we just installed for tests: let local TCP connections in without a password,
    # as on the development machines the tests are written for.
    sed -i '1i host all all 127.0.0.1/32 trust' "/etc/postgresql/$version/main/pg_hba.conf"
  fi
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for 30 pg_answers || die "PostgreSQL did not answer on 127.0.0.1:$PG_PORT"
}

# --- observability tools (issue 12) -------------------------------------------------------
# Prometheus and Alertmanager are needed as programs only (promtool, amtool, and the binaries
# the end-to-end test starts on free ports); no daemon of theirs is wanted, so nothing is
# started here. Debian names the Alertmanager binary prometheus-alertmanager.

has_all() { for tool in "$@"; do command -v "$tool" >/dev/null || return 1; done; }

ensure_prometheus() {
  has_all prometheus promtool && return 0
  apt_install --no-install-recommends prometheus \
    || die "Prometheus is not installed and could not be installed here. Install it (Debian/Ubuntu: apt-get install prometheus; or put prometheus and promtool from prometheus.io on PATH)."
  has_all prometheus promtool || die "prometheus and promtool are still missing after installing"
}

ensure_alertmanager() {
  { has_all amtool && { has_all alertmanager || has_all prometheus-alertmanager; }; } && return 0
  apt_install --no-install-recommends prometheus-alertmanager \
    || die "Alertmanager is not installed and could not be installed here. Install it (Debian/Ubuntu: apt-get install prometheus-alertmanager; or put alertmanager and amtool on PATH)."
  has_all amtool || die "amtool is still missing after installing prometheus-alertmanager"
}
# --- end of observability tools ----------------------------------------------------------

# wrk: the HTTP load generator of the benchmarks (tools/bench), a program only.
ensure_wrk() {
  has_all wrk && return 0
  apt_install --no-install-recommends wrk \
    || die "wrk is not installed and could not be installed here. Install it (Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk)."
  has_all wrk || die "wrk is still missing after installing"
}

for service in "$@"; do
  case "$service" in
    redis) ensure_redis ;;
    postgres) ensure_postgres ;;
    prometheus) ensure_prometheus ;;
    alertmanager) ensure_alertmanager ;;
    wrk) ensure_wrk ;;
    *) die "unknown service: $service (known: redis, postgres, prometheus, alertmanager, wrk)" ;;
  esac
done
