#!/bin/sh
# make rock-check: bgproc as luarocks ships it, offline.
#
# From a scratch copy of the source tree (the files git tracks or would
# track: no build output), `luarocks make` installs into a fresh tree,
# `luarocks pack` turns that install into a binary rock, and the rock is
# installed into a second fresh tree. There the installed command runs:
# `bgproc version`, then a job started and killed through its own daemon
# (a private XDG_RUNTIME_DIR), and `bgproc daemon stop`. Everything is
# removed at the end. Dependencies (luv, lua-cjson, argparse) are the
# machine's (--deps-mode=none): there is no rocks server to fetch from.
#
# (`luarocks make --pack-binary-rock` would be one step, but luarocks 3.8
# gives a "make" build the install paths of the default tree there, not
# of its temporary one.)
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
rocks="luarocks --lua-version=5.4"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bgproc-rock.XXXXXX")
bgproc="$tmp/tree/bin/bgproc"
daemon_up=

cleanup() {
  status=$?
  if [ -n "$daemon_up" ]; then
    (cd / && "$bgproc" daemon stop >/dev/null 2>&1) || true
  fi
  rm -rf "$tmp"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf 'rock-check: %s\n' "$*"; }

# luarocks keeps its cache and config under HOME: a scratch one.
export HOME="$tmp/home"
mkdir -p "$HOME" "$tmp/src" "$tmp/run"

step "copy the source tree"
if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$root" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 sh -c 'for f; do [ -f "$f" ] && printf "%s\0" "$f"; done' sh |
    tar --null -T - -cf -) | tar -C "$tmp/src" -xf -
else
  tar -C "$root" --exclude=./.git --exclude=./build --exclude=./node_modules \
    --exclude='*.so' -cf - . | tar -C "$tmp/src" -xf -
fi

step "luarocks make into a fresh tree"
(cd "$tmp/src" && $rocks make --deps-mode=none --tree="$tmp/built" bgproc-scm-1.rockspec) \
  >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log" >&2; exit 1; }

step "luarocks pack the installed rock"
(cd "$tmp" && $rocks pack --tree="$tmp/built" bgproc scm-1) >"$tmp/pack.log" 2>&1 ||
  { cat "$tmp/pack.log" >&2; exit 1; }
rock=$(ls "$tmp"/bgproc-scm-1.*.rock)
case "$rock" in
  *.all.rock) echo "rock-check: $rock holds no compiled module" >&2; exit 1 ;;
esac

step "luarocks install $(basename "$rock") into another fresh tree"
$rocks install --deps-mode=none --tree="$tmp/tree" "$rock" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log" >&2; exit 1; }
for so in core sys regex jsonenc; do
  [ -f "$tmp/tree/lib/lua/5.4/bgproc/$so.so" ] ||
    { echo "rock-check: bgproc.$so is not installed" >&2; exit 1; }
done

# The installed command, from outside the checkout, with the tree's paths
# only (as a user of that tree would set them).
unset LUA_PATH_5_4 LUA_CPATH_5_4 LUA_PATH LUA_CPATH BGPROC_SOCKET
eval "$($rocks path --tree="$tmp/tree")"
export XDG_RUNTIME_DIR="$tmp/run"
cd /

step "bgproc version"
version=$("$bgproc" version)
case "$version" in
  "bgproc "[0-9]*) echo "  $version" ;;
  *) echo "rock-check: bgproc version said: $version" >&2; exit 1 ;;
esac

step "bgproc start / list / kill through its own daemon"
daemon_up=1
started=$("$bgproc" --json start --name rock-check -- sleep 60)
id=$(printf '%s' "$started" | lua5.4 -e 'print((io.read("a"):match([["id"%s*:%s*"([^"]+)"]])))')
[ -n "$id" ] && [ "$id" != nil ] || { echo "rock-check: no id in: $started" >&2; exit 1; }
"$bgproc" list | grep -q rock-check || { echo "rock-check: $id is not listed" >&2; exit 1; }
"$bgproc" kill --grace 1000 "$id"
"$bgproc" --json show "$id" | grep -q '"cancelled"\|"failed"\|"completed"' ||
  { echo "rock-check: $id is still running after kill" >&2; exit 1; }
"$bgproc" daemon stop
daemon_up=

step "ok"
