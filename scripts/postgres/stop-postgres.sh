#!/usr/bin/env bash
# scripts/postgres/stop-postgres.sh [DATA_DIR] [--purge]   (default /tmp/loupe-postgres)
#
# Stops the server that start-postgres.sh started for DATA_DIR (pg_ctl stop -m fast: open connections are
# closed, then a clean shutdown; -m immediate after PG_STOP_TIMEOUT seconds). Its data stays, and
# start-postgres.sh DATA_DIR starts it again on the same port. --purge also deletes DATA_DIR (only if
# start-postgres.sh made it). Safe to run when nothing is running.
set -euo pipefail

DATA_DIR=${1:-/tmp/loupe-postgres}
PURGE=0
for a in "$@"; do [ "$a" = --purge ] && PURGE=1; done
[ "${1:-}" = --purge ] && DATA_DIR=/tmp/loupe-postgres
TIMEOUT=${PG_STOP_TIMEOUT:-20}
PG_BIN=/usr/lib/postgresql/15/bin
if [ ! -d "$DATA_DIR" ]; then
  echo "stop-postgres: $DATA_DIR does not exist; nothing to stop" >&2
  exit 0
fi
DATA_DIR=$(cd "$DATA_DIR" && pwd -P)
PGDATA=$DATA_DIR/pgdata

if [ "$(id -u)" = 0 ]; then as_owner() { runuser -u postgres -- "$@"; }; else as_owner() { "$@"; }; fi
if [ -s "$PGDATA/PG_VERSION" ] && [ -x "$PG_BIN/pg_ctl" ] && as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  if as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" stop -m fast -w -t "$TIMEOUT" >/dev/null 2>&1; then
    echo "stop-postgres: stopped the server of $DATA_DIR" >&2
  else
    echo "stop-postgres: no clean stop within ${TIMEOUT}s; stopping at once (-m immediate)" >&2
    as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" stop -m immediate -w -t "$TIMEOUT" >/dev/null 2>&1 || { echo "stop-postgres: ERROR: the server of $DATA_DIR did not stop" >&2; exit 1; }
  fi
else
  echo "stop-postgres: no server of $DATA_DIR was running" >&2
fi

if [ "$PURGE" = 1 ]; then
  if [ -e "$DATA_DIR/.start-postgres-cluster" ]; then
    rm -rf "$DATA_DIR" "$DATA_DIR.lock"
    echo "stop-postgres: removed $DATA_DIR" >&2
  else
    echo "stop-postgres: $DATA_DIR was not made by start-postgres.sh; not removing it" >&2
  fi
fi
