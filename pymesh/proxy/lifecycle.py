"""`pymesh run [proxy options] -- COMMAND...`: the sidecar lifecycle outside Kubernetes.

The proxy starts first and the app only once the proxy is ready, so the app never races it for
its first connection; when the app exits, the proxy drains and the command exits with the app's
status, so batch jobs finish cleanly (what Kubernetes native sidecars do for a pod).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
import urllib.request

from pymesh.proxy.command import PROXY_DESCRIPTION, add_proxy_arguments

READY_TIMEOUT = 30.0
READY_POLL = 0.05


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a command behind a sidecar proxy",
        description="Start the proxy, wait until it is ready, run COMMAND; when COMMAND exits, drain "
        "the proxy and exit with COMMAND's status. Proxy options as for `pymesh proxy`: "
        + PROXY_DESCRIPTION,
    )
    add_proxy_arguments(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...", help="the app to run")
    parser.set_defaults(func=run)


def run(args) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("pymesh run: no command given (pymesh run [proxy options] -- COMMAND...)", file=sys.stderr)
        return 2
    if not args.admin_port and not args.health_port:
        print("pymesh run: needs --admin-port or --health-port to know when the proxy is ready", file=sys.stderr)
        return 2
    proxy_argv = args.raw_argv[1 : len(args.raw_argv) - len(args.command)]
    proxy = subprocess.Popen([sys.executable, "-m", "pymesh", "proxy", *proxy_argv])
    try:
        if not _wait_ready(proxy, args):
            print("pymesh run: the proxy did not become ready", file=sys.stderr)
            return proxy.poll() or 1
        app = subprocess.Popen(command)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, lambda signum, frame: app.send_signal(signum))
        status = app.wait()
    finally:
        if proxy.poll() is None:
            proxy.terminate()  # SIGTERM: the proxy drains, then exits
            proxy.wait()
    return status if status >= 0 else 128 - status


def _wait_ready(proxy: subprocess.Popen, args) -> bool:
    """Poll the proxy's readiness endpoint until it answers 200, it exits, or time runs out."""
    url = (
        f"http://{args.admin_address}:{args.admin_port}/ready"
        if args.admin_port
        else f"http://{args.admin_address}:{args.health_port}/healthz/ready"
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while proxy.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(READY_POLL)
    return False
