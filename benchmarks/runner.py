"""`python -m benchmarks run`: every selected row, interleaved over rounds, into one result file.

The upstream nginx starts once; each row's processes start fresh for each of its rounds. Rows run
in a rotated order each round so no row always runs first (cold) or last. A row whose peer cannot
be had is reported unavailable and the run goes on; a row whose processes fail to start or that
produces no data is reported failed, and the run exits non-zero at the end.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import PACKAGE_DIR, RESULTS_DIR, aggregate, configs, dmalatency, h2load, loadgen, machine, procs, realtime, report, results, wrk
from benchmarks.measure import Bench, NoData, Settings, hop_params, measure, start_upstream, upstream_params
from benchmarks.peers import NGINX_UPSTREAM, Peer, Unavailable, version
from benchmarks.rows import GRPC_APP_PORT, UPSTREAM_PORT, Row, select

FULL = Settings(rounds=3, fixed_duration=6.0, warmup=1.0, wrk_duration=5)
SMOKE = Settings(rounds=1, fixed_duration=1.5, warmup=0.5, wrk_duration=1, ready_timeout=20.0)


def cpu_sets() -> tuple[str | None, str | None]:
    """Load generator + upstream on CPU 0, proxies on CPU 1; no pinning on a single core."""
    cpus = sorted(os.sched_getaffinity(0))
    return (str(cpus[0]), str(cpus[1])) if len(cpus) >= 2 else (None, None)


def rotated(rows: list, round_index: int) -> list:
    k = round_index % len(rows) if rows else 0
    return rows[k:] + rows[:k]


def show_config(rows: list[Row], bench: Bench) -> None:
    params = upstream_params(bench)
    print(f"##### upstream ({NGINX_UPSTREAM.template})\n{configs.render(NGINX_UPSTREAM.template, params)}")
    for row in rows:
        for hop in row.hops:
            print(f"##### {row.name} / {hop.name} ({hop.peer.template})\n"
                  f"{configs.render(hop.peer.template, hop_params(bench, hop))}")


def resolve(rows: list[Row]) -> dict[str, str]:
    """Row name -> "ok" or "unavailable: <why>", finding (or installing) each peer once."""
    status = {}
    for row in rows:
        try:
            if row.load in h2load.LOADS and not h2load.available():
                raise Unavailable("h2load not found on PATH (Debian: nghttp2-client)")
            for hop in row.hops:
                hop.peer.find()
            status[row.name] = "ok"
        except Unavailable as exc:
            status[row.name] = f"unavailable: {exc}"
    return status


def git_state() -> dict:
    def git(*args):
        done = subprocess.run(["git", *args], cwd=PACKAGE_DIR, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else None
    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", "pymesh"))}


def run(args) -> int:
    settings = SMOKE if args.smoke else FULL
    if args.rounds:
        settings = Settings(**{**settings.__dict__, "rounds": args.rounds})
    try:
        rows = select(args.rows)
    except ValueError as exc:
        print(f"run: {exc}", file=sys.stderr)
        return 2
    out_dir = Path(args.out) if args.out else RESULTS_DIR
    procs.install_cleanup()
    load_cpus, proxy_cpus = cpu_sets()
    workdir = Path(tempfile.mkdtemp(prefix="pymesh-bench-"))
    try:
        bench = Bench(settings, workdir, Path(), load_cpus, proxy_cpus, args.port_offset)
        rt_problem = None if args.no_realtime else realtime.available()
        bench.realtime = not args.no_realtime and rt_problem is None
        bench.realtime_state = ("on (SCHED_FIFO during fixed-rate phases)" if bench.realtime else
                                "off (--no-realtime)" if args.no_realtime else f"off ({rt_problem})")
        if args.show_config:
            show_config(rows, bench)
            return 0
        missing = [tool for tool in ("wrk", "nginx", "taskset") if not shutil.which(tool)]
        if missing:
            print(f"cannot run: {', '.join(missing)} not found", file=sys.stderr)
            return 2
        bench.loadgen = loadgen.build(out_dir / "build")
        status = resolve(rows)
        result = _run_rounds(bench, rows, status, args)
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    path = results.write(result, out_dir, suffix="-smoke" if args.smoke else "")
    print(report.full_report(result))
    print(f"\nresult: {path}")
    _plot(result, path)
    failed = [n for n, r in result["rows"].items() if r["status"].startswith("failed")]
    if failed:
        print(f"harness failure in: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _run_rounds(bench: Bench, rows: list[Row], status: dict[str, str], args) -> dict:
    busy = [port for port in _ports(bench, rows) if not procs.port_free(port)]
    if busy:
        raise SystemExit(f"ports in use on 127.0.0.1: {busy} (another run? use --port-offset)")
    started = dt.datetime.now(dt.timezone.utc)
    records: dict[str, list[dict]] = {row.name: [] for row in rows}
    runnable = [row for row in rows if status[row.name] == "ok"]
    if bench.load_cpus:
        os.sched_setaffinity(0, {int(bench.load_cpus)})  # keep this harness off the proxies' core
    with dmalatency.hold_zero(not args.no_cpu_dma_latency) as dma_state:
        upstream = start_upstream(bench)
        try:
            for r in range(bench.settings.rounds):
                for position, row in enumerate(rotated(runnable, r)):
                    if status[row.name] != "ok":
                        continue  # failed in an earlier round
                    print(f"round {r + 1}/{bench.settings.rounds}: {row.name}", file=sys.stderr, flush=True)
                    try:
                        record = measure(bench, row)
                    except (procs.StartError, NoData, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                        status[row.name] = f"failed: {exc}".split("\n")[0][:300]
                        print(f"  {status[row.name]}\n{exc}", file=sys.stderr)
                        continue
                    records[row.name].append({"round": r, "position": position, **record})
        finally:
            procs.stop(upstream)
    for row in rows:
        if status[row.name] == "ok" and not records[row.name]:
            status[row.name] = "failed: no data"
    summaries = aggregate.summarize_rows({n: recs for n, recs in records.items() if recs})
    s = bench.settings
    return {
        "schema": 1,
        "date": started.isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "benchmarks", *sys.argv[1:]]),
        "machine": machine.describe(),
        "code": git_state(),
        "settings": {**s.__dict__, "rates": list(s.rates), "smoke": bool(args.smoke), "load_cpus": bench.load_cpus,
                     "proxy_cpus": bench.proxy_cpus, "port_offset": bench.port_offset, "cpu_dma_latency": dma_state,
                     "realtime": bench.realtime_state,
                     "wrk": "wrk -t1 -c%d -d%ds" % (s.wrk_connections, s.wrk_duration),
                     "h2load": "h2load -c%d -m%d" % (h2load.CLIENTS, h2load.STREAMS)},
        "peers": _versions(rows, status),
        "trust": report.TRUST,
        "rows": {row.name: {"description": row.description, "load": row.load, "status": status[row.name],
                            "hops": [h.name for h in row.hops], "rounds": records[row.name],
                            "summary": summaries.get(row.name, {})} for row in rows},
    }


def _ports(bench: Bench, rows: list[Row]) -> list[int]:
    ports = {bench.port(UPSTREAM_PORT), bench.port(GRPC_APP_PORT)}
    for row in rows:
        for hop in row.hops:
            ports |= {v for k, v in hop_params(bench, hop).items() if k.endswith("_port")}
    return sorted(ports)


def _versions(rows: list[Row], status: dict[str, str]) -> dict[str, str]:
    peers = {hop.peer.name: hop.peer for row in rows if status[row.name] == "ok" for hop in row.hops}
    found = {name: version(peer) for name, peer in peers.items() if name != "pymesh"}
    found["upstream nginx"] = version(NGINX_UPSTREAM)
    found["wrk"] = "wrk" if wrk.available() else "missing"
    if any(row.load in h2load.LOADS for row in rows):
        found["h2load"] = version(Peer("h2load", "", lambda: shutil.which("h2load") or "h2load", None)) if h2load.available() else "missing"
    return found


def _plot(result: dict, path: Path) -> None:
    try:
        from benchmarks import plots
    except ImportError as exc:  # matplotlib is the optional `bench` extra
        print(f"plots skipped: {exc} (pip install matplotlib)", file=sys.stderr)
        return
    for png in plots.write_all(result, path.with_suffix("")):
        print(f"plot: {png}")


def show(args) -> int:
    """`report RESULT.json`: the tables again, and the plots redrawn beside it."""
    path = Path(args.result)
    result = json.loads(path.read_text())
    if result.get("kind") == "control":
        from benchmarks import controlreport
        print(controlreport.render(result, markdown=args.markdown))
        return 0
    print(report.full_report(result, markdown=args.markdown))
    _plot(result, path)
    return 0
