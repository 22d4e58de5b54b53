"""`python -m benchmarks scale`: how one pymesh proxy's cost grows with its configuration.

Two questions, each answered by starting one proxy (pinned to the proxy CPU) with a generated
config: idle memory with 0, 100 and 1000 services (each a ServiceEntry plus a VirtualService), and
CPU per request with 10, 100 and 1000 routes in one virtual host, the request matching the first
route and the last. Route matching is per request, so a linear scan shows here as CPU growing with
the route count for the last-route case while the first-route case stays flat.
"""

from __future__ import annotations

import time

from benchmarks import procs, procstat, report, scalegen, wrk
from benchmarks.measure import Bench, Settings, phase
from benchmarks.peers import PYMESH_EGRESS, find_pymesh
from benchmarks.rows import BY_NAME, HOST, shifted
from benchmarks.standalone import run_standalone

FULL = {"services": (0, 100, 1000), "routes": (10, 100, 1000), "wrk_duration": 4}
SMOKE = {"services": (0, 100), "routes": (10, 100), "wrk_duration": 1}


def _params(bench: Bench) -> dict:
    """The one-hop row's pymesh parameters (ports), shifted by --port-offset."""
    return {"workdir": bench.workdir, **shifted(BY_NAME["pymesh-1hop"].hops[0].params, bench.port_offset)}


def _start(bench: Bench, text: str, name: str) -> tuple[procs.Proc, float]:
    """Start one pymesh proxy with the given config; returns it and the seconds it took to be ready."""
    params = _params(bench)
    config = bench.workdir / f"{name}.yaml"
    config.write_text(text)
    t0 = time.monotonic()
    proc = procs.start(name, PYMESH_EGRESS.argv(find_pymesh(), config, params), bench.workdir, bench.proxy_cpus)
    try:
        procs.wait_ready([proc], params["admin_port"], PYMESH_EGRESS.ready_path, timeout=120)
    except BaseException:
        procs.stop(proc)
        raise
    return proc, time.monotonic() - t0


def idle_memory(bench: Bench, count: int) -> dict:
    proc, ready_s = _start(bench, scalegen.services_config(count, _params(bench)), f"services-{count}")
    try:
        time.sleep(1.0)  # let start-up garbage settle
        pids = procstat.process_tree([proc.pid])
        rss = [procstat.memory_kb(pid).get("VmRSS", 0) for pid in pids]
        return {"services": count, "ready_s": ready_s, "rss_mb_total": sum(rss) / 1024, "rss_mb_max_process": max(rss) / 1024}
    finally:
        procs.stop(proc)


def route_cost(bench: Bench, count: int, duration: int) -> list[dict]:
    params = _params(bench)
    proc, ready_s = _start(bench, scalegen.routes_config(count, params), f"routes-{count}")
    try:
        pids = procstat.process_tree([proc.pid])
        found = []
        for which, index in (("first", 0), ("last", count - 1)):
            path = scalegen.route_path(index)
            procs.wait_ready([proc], params["listen_port"], path, HOST, timeout=10)
            result = phase(bench, pids, lambda: wrk.run(params["listen_port"], duration, HOST, cpus=bench.load_cpus,
                                                        path=path), lambda r: r["requests"])
            if result["requests"] - result["non_2xx"] <= 0:
                raise RuntimeError(f"{count} routes, {which}: no successful request ({result})")
            found.append({"routes": count, "match": which, "cpu_us_per_req": result["cpu_us_per_req"],
                          "max_rps": result["rps"], "errors": result["non_2xx"] + result["socket_errors"],
                          "other_cpu_pct": result["noise"]["other_cpu_pct"], "ready_s": ready_s})
        return found
    finally:
        procs.stop(proc)


def _growth(values: list[float]) -> list[str]:
    return [f"{v / values[0]:.2f}x" if values and values[0] else "-" for v in values]


def print_tables(result: dict) -> None:
    mem = result["services"]
    print("== Idle memory by number of services (each a ServiceEntry + VirtualService, plus upstream.bench)")
    print(report.render_table(["services", "RSS MB total", "RSS MB max process", "growth", "seconds to ready"],
                         [[str(m["services"]), f"{m['rss_mb_total']:.1f}", f"{m['rss_mb_max_process']:.1f}", g,
                           f"{m['ready_s']:.2f}"] for m, g in zip(mem, _growth([m["rss_mb_total"] for m in mem]))],
                         markdown=False))
    print("\n== CPU per request by routes in one virtual host (wrk, saturating)")
    for which in ("first", "last"):
        rows = [r for r in result["routes"] if r["match"] == which]
        print(report.render_table([f"routes (match {which})", "CPU us/req", "growth", "max req/s", "errors"],
                             [[str(r["routes"]), f"{r['cpu_us_per_req']:.1f}", g, f"{r['max_rps']:,.0f}", str(r["errors"])]
                              for r, g in zip(rows, _growth([r["cpu_us_per_req"] for r in rows]))], markdown=False))
        print()


def run(args) -> int:
    sizes = SMOKE if args.smoke else FULL
    settings = Settings(rounds=1, fixed_duration=0, warmup=0, wrk_duration=sizes["wrk_duration"])

    def measure(bench: Bench) -> dict:
        return {"services": [idle_memory(bench, n) for n in sizes["services"]],
                "routes": [r for n in sizes["routes"] for r in route_cost(bench, n, sizes["wrk_duration"])]}
    return run_standalone("scale", args, sizes, settings, measure, print_tables)
