"""`pymesh dashboard prometheus-config`: write the prometheus.yml that scrapes a local mesh
(pymesh/telemetry/prometheus_config.py says what it holds), and where the Grafana dashboards are.

The demo and tests call `write_prometheus_config` directly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from pymesh.telemetry import prometheus_config

DASHBOARDS = Path(__file__).resolve().parent.parent / "telemetry" / "dashboards"  # Grafana JSON, one per file


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard", help="Prometheus configuration and Grafana dashboards for a mesh",
        description=f"Observability set-up for a local mesh. Grafana dashboards (mesh, service, workload, "
        f"control plane) are JSON files in {DASHBOARDS}: import them in Grafana (Dashboards > New > Import).")
    commands = parser.add_subparsers(dest="dashboard_command", metavar="COMMAND")
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    config = commands.add_parser(
        "prometheus-config", help="write a prometheus.yml scraping the control server and every proxy",
        description="A prometheus.yml with Istio's jobs: `istiod` scrapes the control server's /metrics, "
        "`envoy-stats` every proxy's /stats/prometheus, found from the control server's service discovery "
        "(/prometheus/targets on its admin port) as proxies come and go, and/or the --target addresses. "
        "Run it with: prometheus --config.file=prometheus.yml")
    config.add_argument("--control", default="127.0.0.1:15014", metavar="HOST:PORT",
                        help="the control server's admin address (default 127.0.0.1:15014); 'none' for a mesh "
                        "without one (then list the proxies with --target)")
    config.add_argument("--target", action="append", default=[], metavar="HOST:PORT",
                        help="a proxy's stats address (its --stats-port), scraped always; repeatable")
    config.add_argument("--scrape-interval", default=prometheus_config.DEFAULT_INTERVAL, metavar="DURATION",
                        help=f"how often to scrape (default {prometheus_config.DEFAULT_INTERVAL}, Istio's)")
    config.add_argument("-o", "--output", metavar="FILE", help="write here (default: standard output)")
    config.set_defaults(func=_prometheus_config)


def write_prometheus_config(path: str | os.PathLike, control: str | None = "127.0.0.1:15014",
                            targets: Sequence[str] = (), scrape_interval: str = prometheus_config.DEFAULT_INTERVAL) -> Path:
    """Write the prometheus.yml for this mesh at `path` (ValueError for a bad option)."""
    path = Path(path)
    path.write_text(prometheus_yml(control, targets, scrape_interval), encoding="utf-8")
    return path


def prometheus_yml(control: str | None, targets: Sequence[str], scrape_interval: str) -> str:
    return prometheus_config.render(prometheus_config.scrape_config(control, targets, scrape_interval))


def _prometheus_config(args) -> int:
    control = None if args.control.lower() == "none" else args.control
    try:
        if args.output:
            write_prometheus_config(args.output, control, args.target, args.scrape_interval)
        else:
            sys.stdout.write(prometheus_yml(control, args.target, args.scrape_interval))
    except ValueError as error:
        print(f"pymesh dashboard prometheus-config: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"pymesh dashboard prometheus-config: cannot write {args.output}: {error}", file=sys.stderr)
        return 1
    return 0
