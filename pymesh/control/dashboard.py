"""`pymesh dashboard prometheus-config`: write the prometheus.yml that scrapes a local mesh
(pymesh/telemetry/prometheus_config.py says what it holds), and where the Grafana dashboards are.

The demo calls `prometheus_argv` (config written, command returned), tests
`write_prometheus_config`.
"""

from __future__ import annotations

import argparse
import os
import shutil
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


def prometheus_argv(workdir: str | os.PathLike, control: str = "127.0.0.1:15014", listen: str = "127.0.0.1:9090",
                    scrape_interval: str = "5s") -> list[str] | None:
    """The command of a Prometheus scraping the mesh of this control server, its prometheus.yml
    and storage written under `workdir`; None when no `prometheus` binary is installed. Its UI
    is then at http://<listen>/ (Graph, Status > Targets)."""
    binary = shutil.which("prometheus")
    if binary is None:
        return None
    config = write_prometheus_config(Path(workdir) / "prometheus.yml", control, (), scrape_interval)
    return prometheus_config.prometheus_command(str(config), str(Path(workdir) / "prometheus-data"), listen, binary)


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
