#!/bin/sh
# Install the Debian packages named on the command line that are missing.
# Does nothing (and needs no root) when all are present.
set -eu
missing=""
for pkg in "$@"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  case "$status" in
    *" installed") ;;
    *) missing="$missing $pkg" ;;
  esac
done
[ -z "$missing" ] && exit 0
echo "ensure-deps: installing:$missing" >&2
if [ "$(id -u)" != 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet.
if ! $SUDO apt-get install -y --no-install-recommends $missing >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y --no-install-recommends $missing
fi
