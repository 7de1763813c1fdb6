#!/bin/sh
# Installs what `make cli-check` and the `rkl serve` part of `make demo`
# need beyond `make check`'s tools, from Debian's packages: curl, and
# Python 3 with venv (the official `openai` client comes from PyPI into a
# venv under build/cli). Does nothing when everything is there.
set -eu
missing=""
command -v curl >/dev/null 2>&1 || missing="$missing curl"
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
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
