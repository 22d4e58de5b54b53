"""`pymesh analyze PATH...`: validate configuration files and list every problem, with file, line
and field path, before they reach a control server or proxy."""

from __future__ import annotations

import argparse
import asyncio

from pymesh.api import limits as input_limits
from pymesh.api.load import load_paths
from pymesh.api.offload import OffloadFailed, run_in_child


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="validate mesh configuration files and report every error",
        description="Load Istio-shaped YAML resources (files, or directories searched for *.yaml "
        "and *.yml) and print every problem as 'file:line path: message'. Exits 1 when there are "
        "errors, 0 when the configuration is valid.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="YAML file or directory")
    input_limits.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Loads in a child process, as the proxy and control server reload, so the time limit
    applies here too."""
    limits = input_limits.from_args(args)
    try:
        result = asyncio.run(run_in_child(load_paths, args.paths, limits, timeout=limits.load_timeout))
    except OffloadFailed as error:
        print(f"{', '.join(args.paths)}: {error}")
        return 1
    for error in result.errors:
        print(error)
    _print_gateway_api_status(result.config)
    if result.errors:
        files = len({error.file for error in result.errors})
        print(f"{_count(len(result.errors), 'error')} in {_count(files, 'file')}")
        return 1
    print(f"ok: {_count(result.resource_count, 'resource')} in {_count(len(result.files), 'file')}")
    return 0


def _print_gateway_api_status(config) -> None:
    """Gateway API objects' status conditions, as an implementation would write them: a route
    that did not attach or a backend that does not resolve is valid YAML but does not work."""
    from pymesh.routing import gateway_api  # the command's one use of the routing layer

    if not gateway_api.has_gateway_api(config):
        return
    for status in gateway_api.translate(config).statuses:
        problems = status.problems()
        for line in problems:
            print(f"warning: {line}")
        if not problems:
            print(f"{status.kind} {status.namespace + '/' if status.namespace else ''}{status.name}: "
                  + ", ".join(f"{c.type}={c.status}" for c in status.conditions or
                              [c for p in status.parents for c in p.conditions][:2]))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
