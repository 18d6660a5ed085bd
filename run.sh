#!/usr/bin/env bash
# The project's one entry point. It sets everything up on a fresh machine, then runs a job:
#   ./run.sh demo            the whole CDN on this machine, a sample video packaged and played
#   ./run.sh test [ARGS]     the test suite: ruff, mypy --strict and every test (or only pytest ARGS)
#   ./run.sh setup           only the set-up (virtual environment, Python packages, ffmpeg, dig)
#   ./run.sh cdn|cdn-origin|cdn-edge|cdn-dns|cdn-player|python ARGS   a command from the environment
set -euo pipefail
cd "$(dirname "$0")"
VENV="${CDN_VENV:-.venv}"

log() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

python_bin() {
    for p in python3.13 python3.12 python3.11 python3; do
        if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$p"; return 0
        fi
    done
    echo "run.sh: Python 3.11 or newer is needed and none was found on PATH" >&2
    exit 1
}

setup_venv() {
    local stamp="$VENV/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)"
    [ -f "$stamp" ] && return 0
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating the virtual environment in $VENV"
        "$(python_bin)" -m venv "$VENV"
    fi
    log "installing the Python packages (pip install -e '.[dev]')"
    if ! { "$VENV/bin/python" -m pip install --disable-pip-version-check --upgrade pip \
           && "$VENV/bin/python" -m pip install --disable-pip-version-check -e '.[dev]'; } >"$VENV/setup.log" 2>&1; then
        tail -n 30 "$VENV/setup.log" >&2
        echo "run.sh: installing the Python packages failed; the whole log is in $VENV/setup.log" >&2
        exit 1
    fi
    rm -f "$VENV"/.installed-*
    touch "$stamp"
}

setup_system_tools() {
    # dig is the real DNS client the tests and the walkthrough use; install it when we can.
    if ! command -v dig >/dev/null; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            log "installing dig (Debian package bind9-dnsutils)"
            apt-get update -qq >/dev/null 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bind9-dnsutils >/dev/null 2>&1 \
                || log "could not install bind9-dnsutils; tests that use dig will fail"
        else
            log "dig is missing: install bind9-dnsutils (tests that use dig will fail)"
        fi
    fi
    # ffmpeg: the system's when present, else the binary inside the imageio-ffmpeg wheel.
    "$VENV/bin/python" -m cdn.ffmpeg >&2
}

setup() { setup_venv; setup_system_tools; }

cmd="${1:-help}"
[ $# -gt 0 ] && shift
case "$cmd" in
    setup) setup ;;
    test)
        setup
        if [ $# -eq 0 ]; then   # the full run (CI): lint, format, types, then every test
            log "ruff check, ruff format --check, mypy --strict"
            "$VENV/bin/ruff" check --quiet .
            "$VENV/bin/ruff" format --check --quiet .
            "$VENV/bin/mypy"
        fi
        exec "$VENV/bin/python" -m pytest "$@" ;;
    demo) setup; exec "$VENV/bin/cdn" demo "$@" ;;
    python) setup; exec "$VENV/bin/python" "$@" ;;
    cdn|cdn-origin|cdn-edge|cdn-dns|cdn-player) setup; exec "$VENV/bin/$cmd" "$@" ;;
    bench) setup; exec "$VENV/bin/python" "benchmarks/$1.py" "${@:2}" ;;
    *) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
