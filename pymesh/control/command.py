"""`pymesh control serve` and `pymesh control status`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from pymesh.api import limits as input_limits
from pymesh.control import bounds
from pymesh.routing.hosts import parse_host_port


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "control",
        help="run the control server, or show the proxies it serves",
        description="The control server: watches a directory of Istio-shaped YAML resources, knows "
        "the registered proxies, and pushes each proxy its view of the mesh over HTTP/2.",
    )
    commands = parser.add_subparsers(dest="control_command", metavar="COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)

    serve = commands.add_parser("serve", help="run the control server", description=(
        "Serve the configuration in --config-dir to proxies. A file that fails validation is rejected "
        "(see /status) and its last good version stays in force."))
    serve.add_argument("--config-dir", required=True, metavar="DIR", help="directory of *.yaml resources, watched")
    serve.add_argument("--listen", type=_address, default=("127.0.0.1", 15010), metavar="ADDR:PORT",
                       help="where proxies connect (default 127.0.0.1:15010)")
    serve.add_argument("--admin", type=_address, default=("127.0.0.1", 15014), metavar="ADDR:PORT",
                       help="/status, /metrics and /ready (default 127.0.0.1:15014)")
    serve.add_argument("--data-dir", metavar="DIR",
                       help="keep the version counter and the registered proxies across restarts")
    serve.add_argument("--debounce", type=_seconds, default=0.1, metavar="SECONDS",
                       help="apply changes after this long without another (default 0.1)")
    serve.add_argument("--max-debounce", type=_seconds, default=1.0, metavar="SECONDS",
                       help="but no later than this after the first (default 1.0)")
    serve.add_argument("--grace", type=_seconds, default=5.0, metavar="SECONDS",
                       help="a disconnected proxy stays an endpoint this long (default 5.0)")
    input_limits.add_arguments(serve)
    bounds.add_arguments(serve)
    serve.set_defaults(func=run_serve)

    status = commands.add_parser("status", help="show each proxy's pushed and ACKed version, and rejected files")
    status.add_argument("--server", type=_address, default=("127.0.0.1", 15014), metavar="ADDR:PORT",
                        help="the control server's admin address (default 127.0.0.1:15014)")
    status.set_defaults(func=run_status)


def run_serve(args: argparse.Namespace) -> int:
    from pymesh.control.server import ControlOptions, ControlServer

    if not os.path.isdir(args.config_dir):
        print(f"pymesh control serve: --config-dir {args.config_dir}: not a directory", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = ControlOptions(
        config_dir=args.config_dir, listen=args.listen, admin=args.admin, data_dir=args.data_dir,
        debounce=args.debounce, max_debounce=args.max_debounce, grace=args.grace,
        limits=input_limits.from_args(args), connection_limits=bounds.from_args(args),
    )
    return asyncio.run(_serve(ControlServer(options)))


async def _serve(server) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
    except OSError as exc:
        print(f"pymesh control: cannot listen: {exc}", file=sys.stderr)
        return 1
    (host, port), (admin_host, admin_port) = server.listen_address, server.admin_address
    print(f"pymesh control: serving on {host}:{port}, admin on {admin_host}:{admin_port}", flush=True)
    await stop.wait()
    await server.stop()
    return 0


def run_status(args: argparse.Namespace) -> int:
    from pymesh.control.status import Unreachable, fetch, format_status

    try:
        data = fetch(*args.server)
    except Unreachable as exc:
        print(f"pymesh control status: {exc}", file=sys.stderr)
        return 1
    print(format_status(data))
    return 0


def _address(value: str) -> tuple[str, int]:
    try:
        host, port = parse_host_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} out of range")
    return host or "0.0.0.0", port


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return seconds


def main(argv: list[str] | None = None) -> int:
    """`python -m pymesh.control.command serve ...`: the control server's own entry point (its
    container runs only this), the same as `pymesh control ...`."""
    parser = argparse.ArgumentParser(prog="pymesh")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["control", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
