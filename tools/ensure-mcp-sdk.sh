#!/bin/sh
# Install the official MCP SDK (@modelcontextprotocol/sdk) from npm into a
# cache folder for the end-to-end spec, once. Prints the folder that holds
# node_modules. Installs Debian's nodejs and npm first if node is missing.
set -eu
dir="${BGPROC_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgproc/npm}"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  "$(dirname "$0")/ensure-deps.sh" nodejs npm >&2
fi
if [ ! -f "$dir/node_modules/@modelcontextprotocol/sdk/package.json" ]; then
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || printf '{"name":"bgproc-e2e","private":true}\n' > "$dir/package.json"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error @modelcontextprotocol/sdk@1 >&2)
fi
echo "$dir"
