#!/usr/bin/env bash
# Creates (or updates) the benchmark's Python virtualenv at target/bench-venv and installs the
# peer bots' requirements into it. Idempotent. Prints the venv's python path on the last line.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/bench-venv"
reqs="$root/bench/peers/requirements.txt"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null 2>&1; then
    echo "setup.sh: $python not found" >&2
    exit 1
fi

# Debian ships venv (and ensurepip) separately: install python3-venv when it is missing.
if ! "$python" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    ver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv \
        || $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${ver}-venv"
fi

# A venv left half-made (no pip) by an interrupted run is made again.
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    mkdir -p "$root/target"
    "$python" -m venv "$venv"
fi

stamp="$venv/.requirements.sha256"
want="$(sha256sum "$reqs" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
    echo "$want" >"$stamp"
fi

"$venv/bin/python" -c 'import aiortc, aiohttp, av' >&2
echo "$venv/bin/python"
