#!/usr/bin/env bash
# scripts/postgres/start-postgres.sh [DATA_DIR]  (default /tmp/loupe-postgres)
#
# A throwaway PostgreSQL 15 server (Debian's postgresql-15) for the state backend of several broker replicas:
# its own data directory, listening on 127.0.0.1 only (a free port picked at the first start), its unix socket
# inside DATA_DIR, a role and a database for Loupe. `npm test` calls it (scripts/postgres/ensure-postgres.mjs).
#
# Packages: installs postgresql-15 with apt-get when its binaries are missing (as root, or through passwordless
# sudo), without letting the package create or start a cluster of its own. Runs `apt-get update` first when apt
# has no list for it (a clean image), or after an install that failed on stale lists. Nothing else is downloaded.
#
# Runs the server as the `postgres` user when called as root (PostgreSQL refuses to run as root), else as the
# caller. DATA_DIR is handed to that user; its parent must let that user through.
#
# Idempotent: a server of DATA_DIR that is running and answers is reused (same port, same URL). A stopped one
# (stop-postgres.sh, a crash, a reboot) is started again on its port with its data: tests that stop the database
# mid-session and restart it get the same DATABASE_URL back. An empty DATA_DIR gets a new cluster.
#
# stdout: exactly this line (also written to DATA_DIR/postgres.env):
#   DATABASE_URL=postgres://loupe:<password>@127.0.0.1:<port>/loupe
# Progress and errors go to stderr. Use e.g.
#   set -a; eval "$(bash scripts/postgres/start-postgres.sh)"; set +a
#
# Environment (all optional):
#   PG_PORT             port on 127.0.0.1 for a new cluster ("auto": a free one)   (auto)
#   PG_USER / PG_DB     the role and the database made for Loupe                  (loupe / loupe)
#   PG_START_TIMEOUT    seconds to wait for the server                            (60)
set -euo pipefail

DATA_DIR=${1:-/tmp/loupe-postgres}
WANT_PORT=${PG_PORT:-auto}
DB_USER=${PG_USER:-loupe}
DB_NAME=${PG_DB:-loupe}
TIMEOUT=${PG_START_TIMEOUT:-60}
PKG=postgresql-15
PG_BIN=/usr/lib/postgresql/15/bin
MARKER=.start-postgres-cluster

T0=${EPOCHREALTIME/./}
log() { local us=$(( ${EPOCHREALTIME/./} - T0 )); printf 'start-postgres: [%3d.%ds] %s\n' $((us / 1000000)) $((us / 100000 % 10)) "$*" >&2; }
die() { echo "start-postgres: ERROR: $*" >&2; exit 1; }

[[ "$DB_USER" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "PG_USER must be a plain lower-case identifier, got \"$DB_USER\""
[[ "$DB_NAME" =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "PG_DB must be a plain lower-case identifier, got \"$DB_NAME\""
[[ "$WANT_PORT" = auto || "$WANT_PORT" =~ ^[0-9]{2,5}$ ]] || die "PG_PORT must be a port number or auto, got \"$WANT_PORT\""
mkdir -p "$DATA_DIR"
DATA_DIR=$(cd "$DATA_DIR" && pwd -P)
[ "$DATA_DIR" != / ] || die "refusing to use / as the data dir"
# Claim an empty dir at once; a non-empty one must carry the marker of an earlier run.
if [ -z "$(ls -A "$DATA_DIR")" ]; then touch "$DATA_DIR/$MARKER"; fi
[ -e "$DATA_DIR/$MARKER" ] || die "$DATA_DIR is not empty and was not made by start-postgres.sh; pick another dir"
PGDATA=$DATA_DIR/pgdata
RUN=$DATA_DIR/run
# One start-postgres.sh at a time per data dir (the server does not inherit fd 9).
exec 9>"$DATA_DIR.lock"
flock -w "$TIMEOUT" 9 || die "another start-postgres.sh holds $DATA_DIR.lock"

# --- packages -------------------------------------------------------------
installed() { [ -x "$PG_BIN/postgres" ] && [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && [ -x "$PG_BIN/psql" -o -x /usr/bin/psql ] && dpkg -s "$PKG" >/dev/null 2>&1; }
if ! installed; then
  command -v apt-get >/dev/null 2>&1 || die "$PKG is not installed ($PG_BIN/postgres missing); this script installs it with apt-get, and there is no apt-get here"
  SUDO=()
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO=(sudo -n)
    else die "$PKG is not installed; run as root (or with passwordless sudo), or install it once: apt-get install $PKG"; fi
  fi
  APT_LOG=$DATA_DIR/apt.log
  apt_() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 "$@" >>"$APT_LOG" 2>&1; }
  apt_failed() { tail -20 "$APT_LOG" >&2; die "$1 (log: $APT_LOG)"; }
  apt_update() { apt_ update -qq || log "apt-get update reported errors (log: $APT_LOG); trying the install anyway"; }
  : >"$APT_LOG"
  # The package would otherwise create a cluster "main" on port 5432 and start it; this script runs its own.
  "${SUDO[@]}" mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" | "${SUDO[@]}" tee /etc/postgresql-common/createcluster.d/loupe-no-main-cluster.conf >/dev/null
  updated=0
  if ! apt-cache show "$PKG" >/dev/null 2>&1; then
    log "apt-get update (no package list for $PKG)"
    apt_update
    updated=1
  fi
  log "installing $PKG (apt-get)"
  if ! apt_ install -y -qq --no-install-recommends "$PKG"; then
    [ "$updated" = 0 ] || apt_failed "apt-get install $PKG failed"
    log "install failed; apt-get update and retry"
    apt_update
    apt_ install -y -qq --no-install-recommends "$PKG" || apt_failed "apt-get install $PKG failed"
  fi
  installed || die "apt-get installed $PKG but $PG_BIN/postgres, initdb or pg_ctl is still missing"
  log "$PKG installed"
fi
PSQL=$PG_BIN/psql
[ -x "$PSQL" ] || PSQL=/usr/bin/psql

# --- who runs the server --------------------------------------------------
if [ "$(id -u)" = 0 ]; then
  getent passwd postgres >/dev/null || die "running as root, and there is no postgres user to run the server as (the $PKG package creates it)"
  chown postgres: "$DATA_DIR"
  as_owner() { runuser -u postgres -- "$@"; }
  as_owner test -w "$DATA_DIR" || die "the postgres user cannot write $DATA_DIR: a parent directory does not let it through (pick a DATA_DIR under /tmp or /var/tmp)"
else
  as_owner() { "$@"; }
fi
chmod 700 "$DATA_DIR"

# --- helpers --------------------------------------------------------------
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {  # a port nothing listens on now, from the range Linux does not hand out as ephemeral
  local p
  for _ in $(seq 1 200); do
    p=$(( 20000 + RANDOM % 12000 ))
    if ! port_busy "$p"; then echo "$p"; return 0; fi
  done
  die "found no free port on 127.0.0.1"
}
running() { as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }
answers() { as_owner "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 3 >/dev/null 2>&1; }
psql_() { as_owner "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -U postgres -d postgres "$@"; }
ensure_role_and_db() {
  local password
  password=$(cat "$DATA_DIR/password")
  psql_ -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN CREATE ROLE $DB_USER; END IF; END \$\$;" \
    -c "ALTER ROLE $DB_USER WITH LOGIN CREATEDB PASSWORD '$password';" >/dev/null
  if [ "$(psql_ -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != 1 ]; then
    psql_ -c "CREATE DATABASE $DB_NAME OWNER $DB_USER;" >/dev/null
    log "database $DB_NAME created (owner $DB_USER)"
  fi
}
print_env() {
  echo "DATABASE_URL=postgres://$DB_USER:$(cat "$DATA_DIR/password")@127.0.0.1:$PORT/$DB_NAME" | tee "$DATA_DIR/postgres.env"
}

# --- a cluster of this dir: reuse, restart, or create -------------------------
if [ -s "$PGDATA/PG_VERSION" ] && [ -s "$DATA_DIR/port" ] && [ -s "$DATA_DIR/password" ]; then
  PORT=$(cat "$DATA_DIR/port")
  [[ "$PORT" =~ ^[0-9]+$ ]] || die "$DATA_DIR/port does not hold a port number"
  if running && answers; then
    log "server of $DATA_DIR already running on 127.0.0.1:$PORT"
    ensure_role_and_db
    print_env
    exit 0
  fi
  if running; then
    # Up but silent (still starting, or recovering after a crash): wait for it like a fresh start.
    log "server of $DATA_DIR is running but does not answer yet; waiting"
  else
    if port_busy "$PORT"; then die "127.0.0.1:$PORT, the port of the cluster in $DATA_DIR, is in use by another process"; fi
    log "starting the stopped server of $DATA_DIR on 127.0.0.1:$PORT (its data kept)"
  fi
else
  [ ! -e "$PGDATA" ] || die "$PGDATA exists but holds no complete cluster of this script (no PG_VERSION, port or password); remove $DATA_DIR and run again"
  if [ "$WANT_PORT" = auto ]; then PORT=$(free_port); else PORT=$WANT_PORT; fi
  if port_busy "$PORT"; then die "127.0.0.1:$PORT is in use by another process (set PG_PORT, or leave it to auto)"; fi
  log "creating a cluster in $PGDATA (port $PORT)"
  mkdir -p "$RUN" "$DATA_DIR/log"
  head -c 18 /dev/urandom | base64 | tr '+/' 'xy' >"$DATA_DIR/password"
  head -c 18 /dev/urandom | base64 | tr '+/' 'xy' >"$DATA_DIR/superuser-password"
  chmod 600 "$DATA_DIR/password" "$DATA_DIR/superuser-password"
  [ "$(id -u)" != 0 ] || chown -R postgres: "$RUN" "$DATA_DIR/log" "$DATA_DIR/password" "$DATA_DIR/superuser-password"
  # Socket connections from the server's own user only (the socket dir is private); TCP needs a password.
  as_owner "$PG_BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$DATA_DIR/superuser-password" --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >"$DATA_DIR/log/initdb.log" 2>&1 || { tail -20 "$DATA_DIR/log/initdb.log" >&2; die "initdb failed (log: $DATA_DIR/log/initdb.log)"; }
  as_owner tee -a "$PGDATA/postgresql.conf" >/dev/null <<EOF
# written by start-postgres.sh: loopback only, socket inside the data dir
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$RUN'
unix_socket_permissions = 0700
# several broker replicas and their tests hold a pool each
max_connections = 200
shared_buffers = 64MB
log_destination = 'stderr'
logging_collector = off
EOF
  echo "$PORT" >"$DATA_DIR/port"
fi

# --- start ----------------------------------------------------------------
mkdir -p "$RUN" "$DATA_DIR/log"
[ "$(id -u)" != 0 ] || chown postgres: "$RUN" "$DATA_DIR/log"
if ! running; then
  # pg_ctl -w returns once the server accepts connections; keep our stdout and lock fd out of the server.
  as_owner "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$DATA_DIR/log/postgres.log" -w -t "$TIMEOUT" start </dev/null >"$DATA_DIR/log/pg_ctl.out" 2>&1 9>&- \
    || { tail -20 "$DATA_DIR/log/postgres.log" >&2; die "the server did not start (log: $DATA_DIR/log/postgres.log)"; }
fi
deadline=$(( $(date +%s) + TIMEOUT ))
until answers; do
  [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${TIMEOUT}s waiting for PostgreSQL on 127.0.0.1:$PORT (log: $DATA_DIR/log/postgres.log)"
  sleep 0.2
done
log "PostgreSQL answers on 127.0.0.1:$PORT"
ensure_role_and_db
log "ready"
print_env
