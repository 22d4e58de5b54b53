"""`pymesh analyze PATH...`: validate configuration files and list every problem, with file, line
and field path, before they reach a control server or proxy."""

from __future__ import annotations

import argparse

from pymesh.api.load import load_paths


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="validate mesh configuration files and report every error",
        description="Load Istio-shaped YAML resources (files, or directories searched for *.yaml "
        "and *.yml) and print every problem as 'file:line path: message'. Exits 1 when there are "
        "errors, 0 when the configuration is valid.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="YAML file or directory")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = load_paths(args.paths)
    for error in result.errors:
        print(error)
    if result.errors:
        files = len({error.file for error in result.errors})
        print(f"{_count(len(result.errors), 'error')} in {_count(files, 'file')}")
        return 1
    print(f"ok: {_count(result.resource_count, 'resource')} in {_count(len(result.files), 'file')}")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
