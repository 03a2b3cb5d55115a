#!/usr/bin/env bash
# Set up meshtwin on a fresh Debian 12 machine: system packages (Mininet, babeld, yggdrasil,
# batctl, nftables) and a virtualenv in .venv built on the *system* Python, with its
# site-packages visible, because Debian's Mininet lives in /usr/lib/python3/dist-packages.
set -euo pipefail
cd "$(dirname "$0")"

APT_PKGS="mininet babeld yggdrasil batctl nftables iproute2 iputils-ping user-mode-linux kmod openssh-server chromium"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=""
  for p in $APT_PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
else
  echo "setup: not root or no apt-get: skipping Debian packages (emu mode needs them)" >&2
fi
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv --system-site-packages .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
# compile the twin's kernel into numba's on-disk cache and measure PQC costs now, so the first
# `twin run` is as fast as the second (a stale or corrupt cache is rebuilt, see twin/jitcache.py)
echo "setup: compiling the twin (numba cache) and calibrating PQC costs"
.venv/bin/python -m twin.sim.warm
echo "setup: ready (.venv/bin/twin)"
