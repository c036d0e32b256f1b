#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for TradeGuard development and tests.
#
#   scripts/postgres.sh install|start|url|stop|status|createdb NAME
#
# Only database URLs go to stdout (as the last line), so callers can do
#   url=$(scripts/postgres.sh start | tail -1)
# Env: PG_PORT (default 15432), PG_DATA_DIR (default <repo>/.cache/postgres/data).
set -euo pipefail
umask 022 # directories we create must stay traversable by the postgres user

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${PG_PORT:-15432}
HOST=127.0.0.1
USER_DB=tradeguard

log() { echo "postgres.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }
url() { echo "postgresql+asyncpg://$USER_DB:$USER_DB@$HOST:$PORT/${1:-$USER_DB}"; }

# postgres refuses to run as root, so as root we act as the postgres OS user.
# cd / because that user may not be able to read the caller's cwd; 9>&- so the
# server does not inherit (and hold forever) our lock.
if [[ $EUID -eq 0 ]]; then SUDO=(); PG_SUPERUSER=postgres; else SUDO=(sudo); PG_SUPERUSER=$(id -un); fi
as_pg() {
  if [[ $EUID -eq 0 ]]; then (cd / && runuser -u postgres -- "$@") 9>&-; else (cd / && "$@") 9>&-; fi
}

find_bin() { # newest installed server version
  local d
  BIN=
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
    [[ -x $d/initdb && -x $d/pg_ctl ]] && BIN=$d
  done
  [[ -n $BIN ]]
}

cmd_install() {
  find_bin && return 0
  log "installing PostgreSQL server from Debian packages (takes a minute)..."
  local out; out=$(mktemp)
  # Keep apt quiet, but show its output if it fails.
  if ! { "${SUDO[@]}" apt-get update -qq &&
         "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
           apt-get install -y -qq --no-install-recommends postgresql; } >"$out" 2>&1; then
    cat "$out" >&2; rm -f "$out"; die "apt-get install postgresql failed"
  fi
  rm -f "$out"
  find_bin || die "postgresql installed but no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
}

# The data dir must be reachable by the postgres user. If the repo lives somewhere
# it cannot traverse (e.g. under /root), fall back to /tmp. The check looks at the
# deepest existing ancestor, so every subcommand resolves the same directory.
resolve_data_dir() {
  if [[ -n ${PG_DATA_DIR:-} ]]; then DATA=$(realpath -m "$PG_DATA_DIR"); return; fi
  DATA=$ROOT/.cache/postgres/data
  local d=$DATA
  while [[ ! -e $d ]]; do d=$(dirname "$d"); done
  if id postgres >/dev/null 2>&1 && ! as_pg test -x "$d"; then
    DATA=/tmp/tradeguard-postgres-$PORT/data
    log "postgres user cannot access $ROOT; using $DATA"
  fi
}

running() { [[ -f $DATA/PG_VERSION ]] && find_bin && as_pg "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1; }

psql_su() { "$BIN/psql" -h "$HOST" -p "$PORT" -U "$PG_SUPERUSER" -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

# Serialise start/stop/createdb: parallel test workers may all call start at once.
lock() { exec 9>"/tmp/tradeguard-postgres-$PORT.lock"; flock 9; }

cmd_start() {
  lock
  cmd_install # first: it creates the postgres user that resolve_data_dir checks
  resolve_data_dir
  if running; then url; return; fi
  if [[ ! -f $DATA/PG_VERSION ]]; then
    log "initialising cluster in $DATA"
    mkdir -p "$DATA"
    if [[ $EUID -eq 0 ]]; then chown postgres:postgres "$DATA"; fi
    chmod 700 "$DATA"
    # Trust auth: the server only listens on loopback and holds disposable data.
    as_pg "$BIN/initdb" -D "$DATA" -U "$PG_SUPERUSER" -E UTF8 --locale=C.UTF-8 \
      --auth=trust >/dev/null
  fi
  log "starting PostgreSQL ($(basename "$(dirname "$BIN")")) on $HOST:$PORT"
  # fsync/synchronous_commit/full_page_writes off trade crash safety for speed:
  # acceptable only because this cluster is a disposable dev/test database.
  local opts="-c listen_addresses=$HOST -p $PORT -c unix_socket_directories=/tmp"
  opts+=" -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  if ! as_pg "$BIN/pg_ctl" start -w -t 60 -D "$DATA" -l "$DATA/server.log" -o "$opts" >/dev/null; then
    tail -n 20 "$DATA/server.log" >&2 || true
    die "pg_ctl start failed (is port $PORT already in use?)"
  fi
  for _ in $(seq 60); do
    "$BIN/pg_isready" -q -h "$HOST" -p "$PORT" -U "$PG_SUPERUSER" -d postgres && break
    sleep 0.5
  done
  "$BIN/pg_isready" -q -h "$HOST" -p "$PORT" -U "$PG_SUPERUSER" -d postgres || die "server not ready on $HOST:$PORT"
  psql_su -v u="$USER_DB" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN SUPERUSER PASSWORD %L', :'u', :'u')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'u') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'u', :'u')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'u') \gexec
SQL
  url
}

cmd_createdb() {
  local name=${1:-}
  [[ $name =~ ^[A-Za-z_][A-Za-z0-9_-]{0,62}$ ]] || die "usage: createdb NAME (letters, digits, _, -)"
  cmd_start >/dev/null # holds the lock from here on
  psql_su -v name="$name" -v u="$USER_DB" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'u')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec
SQL
  url "$name"
}

cmd_stop() {
  lock
  resolve_data_dir
  if running; then
    as_pg "$BIN/pg_ctl" stop -w -m fast -D "$DATA" >/dev/null
    log "stopped"
  else
    log "not running"
  fi
}

cmd_status() {
  resolve_data_dir
  if running; then echo "running: $DATA"; url; else echo "stopped: $DATA"; exit 3; fi
}

# Run one SQL statement as the superuser (fault tests use it to refuse or kill connections).
cmd_sql() {
  [[ -n ${1:-} ]] || die "usage: sql STATEMENT"
  resolve_data_dir
  find_bin
  psql_su -c "$1"
}

case ${1:-} in
  install) cmd_install ;;
  start) cmd_start ;;
  url) url ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  createdb) shift; cmd_createdb "$@" ;;
  sql) shift; cmd_sql "$@" ;;
  *) echo "usage: $0 install|start|url|stop|status|createdb NAME|sql STATEMENT" >&2; exit 2 ;;
esac
