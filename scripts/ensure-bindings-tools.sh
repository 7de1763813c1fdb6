#!/bin/sh
# Installs what the bindings' tests (mk/bindings.mk) need on a fresh Debian
# machine, from Debian's packages, when missing: Go (golang-go, with cgo and
# the race detector), Node.js and npm, Python 3 with venv. The machine's own
# Node.js or Python is used when there is one. Does nothing when all is there.
set -eu
missing=""
command -v go >/dev/null 2>&1 || missing="$missing golang-go"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if ! command -v python3 >/dev/null 2>&1; then
  missing="$missing python3 python3-venv"
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing="$missing python3-venv"
fi
[ -z "$missing" ] && exit 0
echo "installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
