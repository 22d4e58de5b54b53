"""Command line: `python -m benchmarks {run,check,scale,report}` (see README.md)."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="measure every row (direct, pymesh, envoy, haproxy, nginx)")
    run.add_argument("--smoke", action="store_true", help="every row briefly, to prove the harness works")
    run.add_argument("--rounds", type=int, help="rounds (default 3; 1 with --smoke)")
    run.add_argument("--rows", help="comma-separated row names (default: all; direct is always added)")
    run.add_argument("--show-config", action="store_true", help="print every rendered config and exit")
    run.add_argument("--no-cpu-dma-latency", action="store_true",
                     help="do not hold /dev/cpu_dma_latency at 0 during the run")
    run.add_argument("--no-realtime", action="store_true",
                     help="run the fixed-rate phases at normal priority instead of SCHED_FIFO")
    run.add_argument("--port-offset", type=int, default=0, help="shift every port by this much")
    run.add_argument("--out", help="results directory (default benchmarks/results)")

    check = sub.add_parser("check", help="compare a result with the budget pymesh promises")
    check.add_argument("result", help="a result JSON written by `run`")
    check.add_argument("--budget", help="budget YAML (default benchmarks/budget.yaml)")

    scale = sub.add_parser("scale", help="idle memory and CPU/request as services and routes grow")
    scale.add_argument("--smoke", action="store_true", help="small sizes, briefly")
    scale.add_argument("--no-cpu-dma-latency", action="store_true")
    scale.add_argument("--port-offset", type=int, default=0)
    scale.add_argument("--out", help="results directory (default benchmarks/results)")

    show = sub.add_parser("report", help="print the tables (and redraw the plots) of a result JSON")
    show.add_argument("result")
    show.add_argument("--markdown", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from benchmarks.runner import run
        return run(args)
    if args.command == "check":
        from benchmarks.budget import main as check
        return check(args)
    if args.command == "scale":
        from benchmarks.scale import run as scale
        return scale(args)
    from benchmarks.runner import show
    return show(args)


if __name__ == "__main__":
    sys.exit(main())
