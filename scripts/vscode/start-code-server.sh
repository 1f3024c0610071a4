#!/usr/bin/env bash
# Start code-server on loopback with fresh, isolated state under RUN_DIR, in the background.
# Usage: bash start-code-server.sh RUN_DIR [PORT=8123] [FOLDER] [VSIX...]
#   RUN_DIR  created if missing; holds user-data/, extensions/, xdg/, code-server.log, code-server.pid
#   FOLDER   workspace folder to open by default (optional; Playwright can also pass ?folder=)
#   VSIX     .vsix files to install into RUN_DIR/extensions before the server starts
# EXTENSION_TESTS=1 adds --vscode-option enable-smoke-test-driver, which run-ext-tests.mjs needs (a built VS Code
#   ignores the URL payload's extensionDevelopmentPath/extensionTestsPath without it). It also changes the UI:
#   notification toasts are not shown, dialogs are skipped, the `inAutomation` context key is true. So leave it
#   off for UI-driven tests (drive.mjs) and on for extension integration tests.
# LOUPE_VSCODE_SETTINGS: a JSON object merged into the user settings (e.g. {"loupe.brokerUrl": "http://127.0.0.1:7070"}).
# Adapted from shared/vscode-e2e/start-code-server.sh (tested recipe).
# Prints the URL; stop with: bash stop-code-server.sh RUN_DIR
set -euo pipefail
. "$(dirname "$0")/env.sh"
RUN_DIR=$(mkdir -p "$1" && cd "$1" && pwd); PORT=${2:-8123}; FOLDER=${3:-}; shift $(( $# < 3 ? $# : 3 ))
if [ -f "$RUN_DIR/code-server.pid" ] && kill -0 "$(cat "$RUN_DIR/code-server.pid")" 2>/dev/null; then
  echo "already running: pid $(cat "$RUN_DIR/code-server.pid")"; exit 1
fi
mkdir -p "$RUN_DIR/user-data/User" "$RUN_DIR/extensions" "$RUN_DIR/xdg/config" "$RUN_DIR/xdg/data" "$RUN_DIR/xdg/cache" "$RUN_DIR/tmp"
cat > "$RUN_DIR/user-data/User/settings.json" <<'JSON'
{
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.enableExperiments": false,
  "workbench.secondarySideBar.defaultVisibility": "hidden",
  "chat.disableAIFeatures": true,
  "security.workspace.trust.enabled": false,
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoUpdate": false,
  "extensions.autoCheckUpdates": false,
  "git.enabled": false
}
JSON
if [ -n "${LOUPE_VSCODE_SETTINGS:-}" ]; then
  "$NODE24_HOME/bin/node" -e 'const fs=require("fs"),f=process.argv[1];fs.writeFileSync(f,JSON.stringify({...JSON.parse(fs.readFileSync(f,"utf8")),...JSON.parse(process.argv[2])},null,2))' \
    "$RUN_DIR/user-data/User/settings.json" "$LOUPE_VSCODE_SETTINGS"
fi
# Keep code-server's config.yaml and logs, and VS Code's device id (~/.cache/Microsoft), out of $HOME; give it an
# empty extension gallery so neither the server nor the page tries to reach the Open VSX gallery.
# TMPDIR: VS Code leaves vscode-ipc-*.sock, vscode-git-*.sock, vscode-typescript*/ and js-debug's node-cdp.*.sock in
# the temp dir; keep them in RUN_DIR (unix socket paths must stay under 108 bytes: keep RUN_DIR short).
export XDG_CONFIG_HOME="$RUN_DIR/xdg/config" XDG_DATA_HOME="$RUN_DIR/xdg/data" XDG_CACHE_HOME="$RUN_DIR/xdg/cache" \
  TMPDIR="$RUN_DIR/tmp" EXTENSIONS_GALLERY='{}' NODE_DISABLE_COMPILE_CACHE=1
COMMON=(--user-data-dir "$RUN_DIR/user-data" --extensions-dir "$RUN_DIR/extensions")
for vsix in "$@"; do
  code_server "${COMMON[@]}" --install-extension "$(cd "$(dirname "$vsix")" && pwd)/$(basename "$vsix")" --force
done
T0=$(date +%s%N)
# setsid: code-server and every child (extension hosts, pty host, file watcher) share one process group whose
# id is the pid we record, so stop-code-server.sh can end exactly that group.
setsid "$NODE24_HOME/bin/node" "$CODE_SERVER" "${COMMON[@]}" \
  --bind-addr "127.0.0.1:$PORT" --auth none --disable-telemetry --disable-update-check --disable-workspace-trust \
  --reconnection-grace-time 5 \
  ${EXTENSION_TESTS:+--vscode-option enable-smoke-test-driver} \
  ${FOLDER:+"$FOLDER"} > "$RUN_DIR/code-server.log" 2>&1 < /dev/null &
echo $! > "$RUN_DIR/code-server.pid"
for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  kill -0 "$(cat "$RUN_DIR/code-server.pid")" 2>/dev/null || { cat "$RUN_DIR/code-server.log"; echo "code-server exited"; exit 1; }
  sleep 0.25
done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || { echo "code-server not ready after 60 s"; exit 1; }
echo "code-server pid $(cat "$RUN_DIR/code-server.pid") ready on http://127.0.0.1:$PORT/ after $(( ($(date +%s%N)-T0)/1000000 )) ms${EXTENSION_TESTS:+ (extension-test mode)}"
