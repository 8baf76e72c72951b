#!/bin/sh
# Fetches what the seed column of the benchmark report needs, into a cache
# directory outside the repository (nothing here is committed):
#   - Bun, from npm (the `bun` package ships the binary);
#   - the seed, @zenobius/opencode-background 0.1.0-alpha.2, by `npm pack`:
#     `npm install` of it fails (its dependency @opencode-ai/plugin 1.0.85
#     is not in the registry), but its dist/index.js is a self-contained
#     bundle that imports only node builtins.
#
# On success prints two lines, `bun=PATH` and `seed=PATH` (the bundle).
# On failure prints `error=REASON` and exits 1.
#
#   BGPROC_BENCH_CACHE  the cache directory (default ~/.cache/bgproc-bench)
set -u
SEED_PKG=@zenobius/opencode-background
SEED_VERSION=0.1.0-alpha.2
BUN_VERSION=1.4.5
cache=${BGPROC_BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bgproc-bench}

fail() {
  echo "error=$*"
  exit 1
}

command -v npm >/dev/null 2>&1 || fail "npm is not installed"
mkdir -p "$cache/bun" "$cache/seed" || fail "cannot create $cache"

bun="$cache/bun/node_modules/.bin/bun"
if ! "$bun" --version >/dev/null 2>&1; then
  (cd "$cache/bun" &&
    { [ -f package.json ] || echo '{"private":true}' >package.json; } &&
    npm install --no-audit --no-fund --loglevel=error "bun@$BUN_VERSION" >install.log 2>&1) ||
    fail "npm install bun@$BUN_VERSION failed (see $cache/bun/install.log)"
  "$bun" --version >/dev/null 2>&1 || fail "bun does not run after npm install"
fi

seed="$cache/seed/$SEED_VERSION/package/dist/index.js"
if [ ! -f "$seed" ]; then
  dir="$cache/seed/$SEED_VERSION"
  mkdir -p "$dir" || fail "cannot create $dir"
  tgz=$(cd "$dir" && npm pack --silent "$SEED_PKG@$SEED_VERSION" 2>"$dir/pack.log" | tail -n 1)
  if [ -z "$tgz" ] || [ ! -f "$dir/$tgz" ]; then
    fail "npm pack $SEED_PKG@$SEED_VERSION failed (see $dir/pack.log)"
  fi
  tar -xzf "$dir/$tgz" -C "$dir" || fail "cannot unpack $tgz"
  [ -f "$seed" ] || fail "$tgz has no package/dist/index.js"
fi

echo "bun=$bun"
echo "seed=$seed"
