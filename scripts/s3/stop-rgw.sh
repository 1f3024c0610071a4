#!/usr/bin/env bash
# scripts/s3/stop-rgw.sh [DATA_DIR] [--purge]   (default /tmp/loupe-rgw)
#
# Stops the daemons that start-rgw.sh started for DATA_DIR: radosgw, then
# ceph-osd, then ceph-mon, each by the PID in DATA_DIR/run/<name>.pid and only
# if that PID's command line names DATA_DIR/ceph.conf. SIGTERM, then SIGKILL
# after 7.5 s. Nothing else is touched. --purge also deletes DATA_DIR (only if
# start-rgw.sh made it). Safe to run when nothing is running.
set -euo pipefail

DATA_DIR=${1:-/tmp/loupe-rgw}
PURGE=0
for a in "$@"; do [ "$a" = --purge ] && PURGE=1; done
[ "${1:-}" = --purge ] && DATA_DIR=/tmp/loupe-rgw
if [ ! -d "$DATA_DIR" ]; then
  echo "stop-rgw: $DATA_DIR does not exist; nothing to stop" >&2
  exit 0
fi
DATA_DIR=$(cd "$DATA_DIR" && pwd -P)
CONF=$DATA_DIR/ceph.conf
RUN=$DATA_DIR/run

# PID of a daemon of this cluster from its PID file, or nothing (a stale
# file, or a PID whose command line does not name our ceph.conf, is removed).
our_pid() {
  local f=$RUN/$1.pid pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if [[ "$pid" =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] \
     && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-c $CONF "; then
    echo "$pid"
  else
    echo "stop-rgw: $1: pid file is stale (pid $pid is not ours); removing it" >&2
    rm -f "$f"
  fi
}
stopped=0
# One at a time: radosgw needs the osd to shut down cleanly, and the osd
# tells the mon that it is going down.
for group in client.rgw.gw osd.0 mon.a; do
  names=() pids=()
  for name in $group; do
    pid=$(our_pid "$name")
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null || true
    names+=("$name") pids+=("$pid")
  done
  for i in "${!pids[@]}"; do
    pid=${pids[$i]} name=${names[$i]}
    for _ in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "stop-rgw: $name (pid $pid) ignored SIGTERM for 7.5 s; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$RUN/$name.pid"
    echo "stop-rgw: stopped $name (pid $pid)" >&2
    stopped=$((stopped + 1))
  done
done
[ "$stopped" -gt 0 ] || echo "stop-rgw: no daemon of $DATA_DIR was running" >&2

if [ "$PURGE" = 1 ]; then
  if [ -e "$DATA_DIR/.start-rgw-cluster" ]; then
    rm -rf "$DATA_DIR" "$DATA_DIR.lock"
    echo "stop-rgw: removed $DATA_DIR" >&2
  else
    echo "stop-rgw: $DATA_DIR was not made by start-rgw.sh; not removing it" >&2
  fi
fi
