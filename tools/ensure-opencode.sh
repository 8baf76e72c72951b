#!/bin/sh
# Install OpenCode (opencode-ai, a native binary) and its plugin API
# (@opencode-ai/plugin, which brings the zod OpenCode's tools use) from npm
# into a cache folder for the OpenCode spec and bench, once. Prints the
# folder that holds node_modules (node_modules/.bin/opencode is the CLI).
# Installs Debian's nodejs and npm first if node is missing.
set -eu
dir="${BGPROC_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgproc/npm}/opencode"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  "$(dirname "$0")/ensure-deps.sh" nodejs npm >&2
fi
if [ ! -x "$dir/node_modules/.bin/opencode" ] || [ ! -f "$dir/node_modules/@opencode-ai/plugin/package.json" ]; then
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || printf '{"name":"bgproc-opencode-e2e","private":true}\n' > "$dir/package.json"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error opencode-ai@1 @opencode-ai/plugin@1 >&2)
  # the CLI must run here (the platform's binary came with it)
  "$dir/node_modules/.bin/opencode" --version >/dev/null
fi
echo "$dir"
