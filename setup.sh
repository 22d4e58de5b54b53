#!/usr/bin/env bash
# Set up a development machine for pymesh: the system tools the tests and benchmarks use as real
# peers (curl, nghttp2, wrk, nginx, haproxy, iptables, iproute2, a C compiler, Prometheus for its
# promtool, headless Chromium for the mesh page's test), then a virtual environment in .venv with
# pymesh and its test and bench extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

if command -v apt-get >/dev/null; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        python3-venv curl nghttp2-client wrk nginx-light haproxy iptables iproute2 gcc libc6-dev procps \
        prometheus chromium fonts-dejavu-core >/dev/null
else
    echo "setup.sh: no apt-get here; install curl, nghttp2-client, wrk, nginx, haproxy, iptables, iproute2, gcc, prometheus and chromium yourself" >&2
fi

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "setup.sh: pymesh needs Python 3.11+" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,bench]'
echo "pymesh is installed in .venv; activate it with: . .venv/bin/activate"
