"""`pymesh analyze PATH...`: validate configuration files and list every problem, with file, line
and field path, before they reach a control server or proxy: errors (exit 1), then warnings
(exit 0 when there are only warnings): resources and fields pymesh does not apply, and what the
compiler warns about for the proxies the configuration would run on (pymesh.routing.analysis)."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

from pymesh.api import limits as input_limits
from pymesh.api.limits import Limits
from pymesh.api.load import LoadResult, load_paths
from pymesh.api.offload import OffloadFailed, run_in_child
from pymesh.routing.analysis import CompileWarning, compile_warnings


@dataclass(frozen=True)
class Analysis:
    result: LoadResult
    compile_warnings: tuple[CompileWarning, ...]  # only when the configuration has no errors


def analyze(paths: list[str], limits: Limits) -> Analysis:
    """Load, and when that succeeds compile for each proxy (in the child: both are bounded)."""
    result = load_paths(paths, limits)
    return Analysis(result, () if result.errors else tuple(compile_warnings(result.config)))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="validate mesh configuration files and report every error",
        description="Load Istio-shaped YAML resources (files, or directories searched for *.yaml "
        "and *.yml) and print every problem as 'file:line path: message'. Exits 1 when there are "
        "errors, 0 when the configuration is valid (warnings do not change the exit code: resources of "
        "kinds pymesh does not implement and Istio fields it ignores are warnings, errors with --strict).",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="YAML file or directory")
    input_limits.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Loads in a child process, as the proxy and control server reload, so the time limit
    applies here too."""
    limits = input_limits.from_args(args)
    try:
        analysis = asyncio.run(run_in_child(analyze, args.paths, limits, timeout=limits.load_timeout))
    except OffloadFailed as error:
        print(f"{', '.join(args.paths)}: {error}")
        return 1
    result = analysis.result
    for error in result.errors:
        print(error)
    for warning in (*result.warnings, *analysis.compile_warnings):
        print(warning)
    warnings = len(result.warnings) + len(analysis.compile_warnings)
    and_warnings = f", {_count(warnings, 'warning')}" if warnings else ""
    _print_gateway_api_status(result.config)
    if result.errors:
        files = len({error.file for error in result.errors})
        print(f"{_count(len(result.errors), 'error')} in {_count(files, 'file')}{and_warnings}")
        return 1
    print(f"ok: {_count(result.resource_count, 'resource')} in {_count(len(result.files), 'file')}{and_warnings}")
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
