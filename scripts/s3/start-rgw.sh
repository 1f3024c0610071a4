#!/usr/bin/env bash
# scripts/s3/start-rgw.sh [DATA_DIR]  (default /tmp/loupe-rgw)
#
# A throwaway single-node Ceph Pacific cluster (ceph-mon + one ceph-osd, pool
# size 1, no mgr) with the RADOS Gateway (beast) on 127.0.0.1: the real S3
# server with Object Lock that Loupe's audit tests run against. Everything
# binds to loopback. `npm test` calls it (scripts/s3/ensure-s3.mjs).
#
# Packages: installs radosgw ceph-mon ceph-osd curl with apt-get when any of
# their commands is missing (as root, or through passwordless sudo). Runs
# `apt-get update` first when apt has no lists for them (a clean image), or
# after an install that failed on stale lists. Nothing else is downloaded.
#
# Idempotent: if the cluster under DATA_DIR is running and S3 answers, it only
# makes sure the test user exists and prints the settings. Otherwise it stops
# whatever of that cluster is left (by PID file), wipes DATA_DIR (only if an
# earlier run of this script created it, or it is empty) and builds a new one.
# The cluster is disposable: nothing in it survives stop-rgw.sh.
#
# stdout: exactly these lines (also written to DATA_DIR/s3.env):
#   S3_ENDPOINT=http://127.0.0.1:7480
#   AWS_ACCESS_KEY_ID=...
#   AWS_SECRET_ACCESS_KEY=...
#   AWS_REGION=us-east-1
# Progress and errors go to stderr. Use e.g.
#   set -a; eval "$(bash scripts/s3/start-rgw.sh)"; set +a
#
# Environment (all optional):
#   RGW_PORT            S3 port on 127.0.0.1                  (7480)
#   RGW_MON_PORT        ceph-mon msgr2 port on 127.0.0.1      (3300)
#                       "auto" for either: a free port picked when the cluster is built (a running
#                       cluster in DATA_DIR keeps the ports its ceph.conf names), so clusters of
#                       their own (tests that stop or freeze one) never collide with another run
#   RGW_OSD_STORE       memstore (RAM, fastest) | bluestore (sparse file in DATA_DIR)  (memstore)
#   RGW_STORE_BYTES     capacity the OSD reports; memstore holds data in RAM  (2147483648)
#   RGW_ACCESS_KEY / RGW_SECRET_KEY   fixed S3 credentials of the test user
#   RGW_START_TIMEOUT   seconds to wait for each stage        (120)
# Adapted from the recipe in shared/s3-object-lock (Ceph 16.2.15 on Debian 12).
set -euo pipefail

DATA_DIR=${1:-/tmp/loupe-rgw}
RGW_PORT=${RGW_PORT:-7480}
MON_PORT=${RGW_MON_PORT:-3300}
OSD_STORE=${RGW_OSD_STORE:-memstore}
STORE_BYTES=${RGW_STORE_BYTES:-2147483648}
ACCESS_KEY=${RGW_ACCESS_KEY:-RGWTESTACCESSKEY0001}
SECRET_KEY=${RGW_SECRET_KEY:-rgwTestSecretKey000000000000000000000001}
REGION=us-east-1          # RGW's default zonegroup accepts this LocationConstraint
TIMEOUT=${RGW_START_TIMEOUT:-120}
USER_ID=loupe-test
MARKER=.start-rgw-cluster
DAEMONS=(mon.a osd.0 client.rgw.gw)   # start order; stop in reverse

T0=${EPOCHREALTIME/./}
log() { local us=$(( ${EPOCHREALTIME/./} - T0 )); printf 'start-rgw: [%3d.%ds] %s\n' $((us / 1000000)) $((us / 100000 % 10)) "$*" >&2; }
die() { echo "start-rgw: ERROR: $*" >&2; exit 1; }

case "$OSD_STORE" in memstore|bluestore) ;; *) die "RGW_OSD_STORE must be memstore or bluestore";; esac
mkdir -p "$DATA_DIR"
DATA_DIR=$(cd "$DATA_DIR" && pwd -P)
[ "$DATA_DIR" != / ] || die "refusing to use / as the data dir"
# Claim an empty dir at once; a non-empty one must carry the marker of an earlier run.
if [ -z "$(ls -A "$DATA_DIR")" ]; then touch "$DATA_DIR/$MARKER"; fi
[ -e "$DATA_DIR/$MARKER" ] || die "$DATA_DIR is not empty and was not made by start-rgw.sh; pick another dir"
CONF=$DATA_DIR/ceph.conf
RUN=$DATA_DIR/run
# One start-rgw.sh at a time per data dir (the daemons do not inherit fd 9).
exec 9>"$DATA_DIR.lock"
flock -w "$TIMEOUT" 9 || die "another start-rgw.sh holds $DATA_DIR.lock"

# --- packages -------------------------------------------------------------
PKGS=(radosgw ceph-mon ceph-osd curl)
missing_cmds() {
  local b
  for b in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool curl; do
    command -v "$b" >/dev/null 2>&1 || printf '%s ' "$b"
  done
}
missing=$(missing_cmds)
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null 2>&1 \
    || die "missing commands: $missing; this script installs them with apt-get (${PKGS[*]}), and there is no apt-get here"
  SUDO=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n)
    else die "missing commands: $missing; run as root (or with passwordless sudo), or install them once: apt-get install ${PKGS[*]}"; fi
  fi
  APT_LOG=$DATA_DIR/apt.log
  apt_() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@" >>"$APT_LOG" 2>&1; }
  apt_failed() { tail -20 "$APT_LOG" >&2; die "$1 (log: $APT_LOG)"; }
  # An unreachable third-party source makes `apt-get update` fail although Debian's lists were
  # fetched; go on, and let the install say whether the packages can be had.
  apt_update() { apt_ update -qq || log "apt-get update reported errors (log: $APT_LOG); trying the install anyway"; }
  : >"$APT_LOG"
  updated=0
  # A clean image has no package lists at all: update before installing.
  if ! apt-cache show "${PKGS[@]}" >/dev/null 2>&1; then
    log "apt-get update (no package lists for ${PKGS[*]})"
    apt_update
    updated=1
  fi
  log "installing ${PKGS[*]} (apt-get; missing: $missing)"
  if ! apt_ install -y -qq --no-install-recommends "${PKGS[@]}"; then
    [ "$updated" = 0 ] || apt_failed "apt-get install ${PKGS[*]} failed"
    # stale or partial lists (no candidate, or .debs the mirror no longer has): refresh, retry once
    log "install failed; apt-get update and retry"
    apt_update
    apt_ install -y -qq --no-install-recommends "${PKGS[@]}" || apt_failed "apt-get install ${PKGS[*]} failed"
  fi
  missing=$(missing_cmds)
  [ -z "$missing" ] || die "apt-get installed ${PKGS[*]} but these commands are still missing: $missing"
  log "packages installed"
fi

# --- helpers --------------------------------------------------------------
# PID of a daemon of *this* cluster, or nothing. A PID counts only if its
# command line names our ceph.conf, so a recycled PID is never taken for ours.
daemon_pid() {
  local f=$RUN/$1.pid pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "-c $CONF "; then
    echo "$pid"
  fi
}
start_daemon() {  # the daemons fork into the background; keep our stdout and lock fd out of them
  local name=$1; shift
  "$@" </dev/null >"$DATA_DIR/log/$name.out" 2>&1 9>&- \
    || { cat "$DATA_DIR/log/$name.out" >&2; die "$name did not start (log: $DATA_DIR/log/$name.log)"; }
}
stop_daemons() {  # stop_daemons LABEL: radosgw, then osd, then mon, each waited for (10 s, then SIGKILL)
  local i d pid
  for ((i=${#DAEMONS[@]}-1; i>=0; i--)); do
    d=${DAEMONS[$i]}; pid=$(daemon_pid "$d")
    [ -n "$pid" ] || continue
    echo "start-rgw: stopping $1$d (pid $pid)" >&2
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
}
s3_up() { [ "$(curl -s -o /dev/null -m 3 -w '%{http_code}' "http://127.0.0.1:$RGW_PORT/" 2>/dev/null)" = 200 ]; }
wait_for() {  # wait_for DESCRIPTION CMD...
  local what=$1; shift
  local deadline=$(( $(date +%s) + TIMEOUT ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting for $what (logs: $DATA_DIR/log)"
    sleep 0.3
  done
}
ceph_() { timeout 30 ceph -c "$CONF" --connect-timeout 10 "$@"; }
osd_up() { ceph_ osd dump -f json | grep -q '"up":1'; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {  # a port nothing listens on now, from the range Linux does not hand out as ephemeral
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 12000 ))
    if ! port_busy "$p"; then echo "$p"; return 0; fi
  done
  die "found no free port on 127.0.0.1"
}
print_env() {
  {
    echo "S3_ENDPOINT=http://127.0.0.1:$RGW_PORT"
    echo "AWS_ACCESS_KEY_ID=$ACCESS_KEY"
    echo "AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
    echo "AWS_REGION=$REGION"
  } | tee "$DATA_DIR/s3.env"
}
ensure_user() {
  if radosgw-admin -c "$CONF" user info --uid="$USER_ID" 2>/dev/null | grep -qF "\"access_key\": \"$ACCESS_KEY\""; then
    return 0
  fi
  radosgw-admin -c "$CONF" user rm --uid="$USER_ID" >/dev/null 2>&1 || true
  radosgw-admin -c "$CONF" user create --uid="$USER_ID" --display-name="Loupe audit tests" \
    --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" >"$DATA_DIR/log/user-create.json" 2>&1 \
    || { cat "$DATA_DIR/log/user-create.json" >&2; die "radosgw-admin user create failed"; }
  log "S3 user $USER_ID created"
}

# --- ports ----------------------------------------------------------------
AUTO_RGW_PORT=0 AUTO_MON_PORT=0
[ "$RGW_PORT" = auto ] && AUTO_RGW_PORT=1
[ "$MON_PORT" = auto ] && AUTO_MON_PORT=1
# A cluster already built here keeps its ports.
if [ -s "$CONF" ]; then
  if [ "$AUTO_RGW_PORT" = 1 ]; then RGW_PORT=$(sed -n 's/^rgw frontends = beast endpoint=127\.0\.0\.1:\([0-9]*\)$/\1/p' "$CONF"); fi
  if [ "$AUTO_MON_PORT" = 1 ]; then MON_PORT=$(sed -n 's/^mon host = \[v2:127\.0\.0\.1:\([0-9]*\)\]$/\1/p' "$CONF"); fi
fi

# --- already running? -----------------------------------------------------
running=0
for d in "${DAEMONS[@]}"; do
  if [ -n "$(daemon_pid "$d")" ]; then running=$((running + 1)); fi
done
if [ "$running" = "${#DAEMONS[@]}" ]; then
  # all three are up (RGW may still be coming up if a start was interrupted)
  deadline=$(( $(date +%s) + 30 ))
  until s3_up || [ "$(date +%s)" -ge "$deadline" ]; do sleep 0.3; done
  if s3_up; then
    log "cluster in $DATA_DIR already running; S3 answers on 127.0.0.1:$RGW_PORT"
    ensure_user
    print_env
    exit 0
  fi
  log "daemons running but S3 does not answer; rebuilding"
fi

# --- stop leftovers of this cluster, wipe, build anew ---------------------
stop_daemons "leftover "
find "$DATA_DIR" -mindepth 1 -maxdepth 1 ! -name apt.log ! -name "$MARKER" -exec rm -rf {} +

if [ "$AUTO_RGW_PORT" = 1 ]; then RGW_PORT=$(free_port); fi
if [ "$AUTO_MON_PORT" = 1 ]; then
  MON_PORT=$(free_port)
  while [ "$MON_PORT" = "$RGW_PORT" ]; do MON_PORT=$(free_port); done
fi
log "ports: S3 127.0.0.1:$RGW_PORT, ceph-mon 127.0.0.1:$MON_PORT"
if port_busy "$RGW_PORT"; then die "127.0.0.1:$RGW_PORT is in use by another process (set RGW_PORT)"; fi
if port_busy "$MON_PORT"; then die "127.0.0.1:$MON_PORT is in use by another process (set RGW_MON_PORT)"; fi

mkdir -p "$DATA_DIR"/{log,run,mon/ceph-a,osd/ceph-0,rgw}
FSID=$(cat /proc/sys/kernel/random/uuid)
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)

if [ "$OSD_STORE" = memstore ]; then
  store_conf="osd objectstore = memstore
memstore device bytes = $STORE_BYTES"
else
  store_conf="osd objectstore = bluestore
bluestore block create = true
bluestore block size = $STORE_BYTES
bluestore fsck on mount = false
osd memory target = 1073741824"
fi

cat >"$CONF" <<EOF
# written by start-rgw.sh; test cluster, loopback only, no authentication
[global]
fsid = $FSID
mon initial members = a
mon host = [v2:127.0.0.1:$MON_PORT]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
keyring = /dev/null
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool delete = true
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
run dir = $RUN
admin socket = $RUN/\$cluster-\$name.asok
pid file = $RUN/\$name.pid
log file = $DATA_DIR/log/\$name.log
mon cluster log file = $DATA_DIR/log/cluster.log
log to stderr = false
err to stderr = false
chdir = $DATA_DIR

[mon]
mon data = $DATA_DIR/mon/ceph-\$id
# commit map changes at once instead of batching them for 1 s: RGW creates
# its pools one by one at first start, this cuts the start from ~15 s to ~5 s
paxos propose interval = 0.05
paxos min wait = 0.01

[osd]
osd data = $DATA_DIR/osd/ceph-\$id
$store_conf
osd class load list = *
osd class default list = *

[client]
# radosgw defaults to a "secure" mon connection, which needs cephx
ms mon client mode = crc
log file = $DATA_DIR/log/\$name.log

[client.rgw.gw]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $DATA_DIR/rgw
rgw init timeout = $TIMEOUT
# the lifecycle worker sleeps in 5 s steps and holds up a SIGTERM that long;
# lifecycle rules are still stored, only not processed
rgw enable lc threads = false
EOF

# If this run fails from here on, stop the daemons it started, so that a
# failed start leaves nothing running.
cleanup_failed_start() {
  local rc=$?
  if [ "$rc" != 0 ]; then stop_daemons "after the failure: "; fi
}
trap cleanup_failed_start EXIT
trap 'exit 130' INT TERM

log "creating cluster in $DATA_DIR ($OSD_STORE)"
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$DATA_DIR/monmap" >/dev/null
ceph-mon -c "$CONF" --id a --mkfs --monmap "$DATA_DIR/monmap" >"$DATA_DIR/log/mkfs-mon.log" 2>&1 \
  || { cat "$DATA_DIR/log/mkfs-mon.log" >&2; die "ceph-mon --mkfs failed"; }
touch "$DATA_DIR/mon/ceph-a/keyring"
start_daemon mon.a ceph-mon -c "$CONF" --id a
wait_for "ceph-mon" ceph_ mon stat
log "ceph-mon up"

ceph_ osd new "$OSD_UUID" 0 >/dev/null
ceph_ osd crush add osd.0 1 root=default host=localhost >"$DATA_DIR/log/crush-add.log" 2>&1
ceph-osd -c "$CONF" --id 0 --mkfs --osd-uuid "$OSD_UUID" >"$DATA_DIR/log/mkfs-osd.log" 2>&1 \
  || { tail -5 "$DATA_DIR/log/osd.0.log" >&2; die "ceph-osd --mkfs failed"; }
start_daemon osd.0 ceph-osd -c "$CONF" --id 0
wait_for "ceph-osd to be up" osd_up
log "ceph-osd up"

start_daemon client.rgw.gw radosgw -c "$CONF" -n client.rgw.gw
wait_for "S3 on 127.0.0.1:$RGW_PORT" s3_up
log "radosgw answers on 127.0.0.1:$RGW_PORT"

ensure_user
for d in "${DAEMONS[@]}"; do
  [ -n "$(daemon_pid "$d")" ] || die "$d is not running (logs: $DATA_DIR/log)"
done
trap - EXIT INT TERM
log "ready"
print_env
