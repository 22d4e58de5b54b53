"""Command line: `python -m benchmarks {run,check,scale,control,regex,h2codec,route-costs,report}` (see README.md)."""

from __future__ import annotations

import argparse
import sys
from pymesh.api import wire


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

    control = sub.add_parser("control", help="control server: convergence, CPU and memory with many proxies")
    control.add_argument("--smoke", action="store_true", help="100 proxies, one change, briefly")
    control.add_argument("--proxies", help="comma-separated proxy counts (default 100,1000,2000)")
    control.add_argument("--changes", type=int, help="changes measured per count (default 5; 1 with --smoke)")
    control.add_argument("--scoped-proxies", type=int,
                         help="proxies in the Sidecar-scoped case (default 1000, 100 with --smoke; 0: skip it)")
    control.add_argument("--processes", type=int, default=4, help="worker processes for the simulated proxies")
    control.add_argument("--client-window", type=int, metavar="BYTES", default=wire.MAX_FRAME,
                         help="HTTP/2 receive window the simulated proxies advertise (default: 16 MiB, as "
                              "pymesh's proxy does; 65535 is h2's default)")
    control.add_argument("--profile", metavar="DIR", help="run each server under cProfile, writing DIR/<case>.prof")
    control.add_argument("--out", help="results directory (default benchmarks/results)")

    regex = sub.add_parser("regex", help="route regex match time: RE2 against Python's re, hostile and ordinary values")
    regex.add_argument("--smoke", action="store_true", help="short inputs and budgets, briefly")
    regex.add_argument("--markdown", action="store_true", help="print the tables as markdown")
    regex.add_argument("--out", help="results directory (default benchmarks/results)")

    h2codec = sub.add_parser("h2codec", help="CPU per request of one HTTP/2 side: pymesh's codec against h2")
    h2codec.add_argument("--smoke", action="store_true", help="one short round")
    h2codec.add_argument("--requests", type=int, default=20_000, help="requests per round (default 20000)")
    h2codec.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")

    route_costs = sub.add_parser("route-costs", help="latency with a hanging 100% mirror and with a 200 ms fault delay")
    route_costs.add_argument("--smoke", action="store_true", help="a low rate, briefly")
    route_costs.add_argument("--no-cpu-dma-latency", action="store_true")
    route_costs.add_argument("--port-offset", type=int, default=0)
    route_costs.add_argument("--out", help="results directory (default benchmarks/results)")

    show = sub.add_parser("report", help="print the tables (and redraw the plots) of a result JSON (run or control)")
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
    if args.command == "control":
        from benchmarks.control_scale import run as control
        return control(args)
    if args.command == "regex":
        from benchmarks.regex import run as regex
        return regex(args)
    if args.command == "h2codec":
        from benchmarks.h2codec import run as h2codec
        return h2codec(args)
    if args.command == "route-costs":
        from benchmarks.route_costs import run as route_costs
        return route_costs(args)
    from benchmarks.runner import show
    return show(args)


if __name__ == "__main__":
    sys.exit(main())
