"""`python -m benchmarks route-costs`: what a route feature does to the requests it applies to,
measured (issue 10 asks for these figures here, not in tests):

- a mirror that never answers: the primary's latency must not change;
- a 100% fault delay of 200 ms: the delay must add 200 ms (within 20 ms) at p50.

One pymesh proxy (the one-hop row's ports) in front of the benchmark's nginx, with a
VirtualService routing upstream.bench to it; each case adds one feature to that route. The mirror
case mirrors 100% of requests to mirror.bench, whose one endpoint accepts connections, reads them
and never answers: its shadows pile up to the proxy's in-flight cap and later copies are dropped
(counted in `mirror.shadows_dropped_overflow`), the steady state a hanging mirror produces. Each
case is one open-loop run at a fixed rate (loadgen; the delay case at a rate its connections can
carry with 200 ms each) and one saturating run (wrk) for CPU per request.
"""

from __future__ import annotations

import socket
import threading

from benchmarks import configs, loadgen, procs, procstat, report, wrk
from benchmarks.measure import Bench, Settings, phase
from benchmarks.peers import PYMESH_EGRESS, find_pymesh
from benchmarks.rows import BY_NAME, HOST, shifted
from benchmarks.standalone import run_standalone

FULL = {"rate": 1000, "fixed_duration": 12.0, "warmup": 2.0, "wrk_duration": 4}
SMOKE = {"rate": 200, "fixed_duration": 3.0, "warmup": 1.0, "wrk_duration": 1}
DELAY_RATE = 40  # loadgen's 16 connections carry 80 req/s at 200 ms each: half that, open loop
ROUTE = """
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: mirror, namespace: bench}}
spec:
  hosts: [mirror.bench]
  ports: [{{number: {listen_port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints: [{{address: 127.0.0.1, ports: {{http: {mirror_port}}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: upstream, namespace: bench}}
spec:
  hosts: [upstream.bench]
  http:
  - route: [{{destination: {{host: upstream.bench}}}}]
{feature}"""
# (name, what the route adds, the open-loop rate: None for the size's)
CASES = (
    ("plain route", "", None),
    ("hanging mirror, 100%", "    mirror: {host: mirror.bench}\n    mirrorPercentage: {value: 100}\n", None),
    ("fault delay 200 ms, 100%", "    fault: {delay: {fixedDelay: 200ms, percentage: {value: 100}}}\n", DELAY_RATE),
)


class HangingMirror:
    """A TCP server that reads whatever it is sent and never answers (one thread per connection)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        with conn:
            while conn.recv(65536):
                pass

    def close(self) -> None:
        self.sock.close()


def _case(bench: Bench, sizes: dict, mirror_port: int, index: int) -> dict:
    name, feature, rate = CASES[index]
    rate = rate or sizes["rate"]
    params = {"workdir": bench.workdir, **shifted(BY_NAME["pymesh-1hop"].hops[0].params, bench.port_offset)}
    config = bench.workdir / f"case-{index}.yaml"
    config.write_text(configs.render(PYMESH_EGRESS.template, params)
                      + ROUTE.format(listen_port=params["listen_port"], mirror_port=mirror_port, feature=feature))
    proc = procs.start("pymesh", PYMESH_EGRESS.argv(find_pymesh(), config, params), bench.workdir, bench.proxy_cpus)
    try:
        procs.wait_ready([proc], params["admin_port"], PYMESH_EGRESS.ready_path, timeout=60)
        procs.wait_ready([proc], params["listen_port"], "/", HOST, timeout=10)
        pids = procstat.process_tree([proc.pid])
        fixed = loadgen.run(bench.loadgen, params["listen_port"], rate, sizes["fixed_duration"], sizes["warmup"],
                            HOST, bench.load_cpus, bench.settings.loadgen_connections)
        saturated = phase(bench, pids, lambda: wrk.run(params["listen_port"], sizes["wrk_duration"], HOST,
                                                        cpus=bench.load_cpus), lambda r: r["requests"])
        return {"case": name, "latency_us": fixed["latency_us"], "rate": rate,
                "cpu_us_per_req": saturated["cpu_us_per_req"], "max_rps": saturated["rps"],
                "errors": saturated["non_2xx"] + saturated["socket_errors"],
                "mirror_stats": _mirror_stats(params["admin_port"]) if "mirror" in feature else {}}
    finally:
        procs.stop(proc)


def _mirror_stats(admin_port: int) -> dict[str, int]:
    with socket.create_connection(("127.0.0.1", admin_port), timeout=5) as sock:
        sock.sendall(b"GET /stats HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b"".join(iter(lambda: sock.recv(65536), b""))
    found: dict[str, int] = {}
    for line in data.decode("latin-1").splitlines():
        if ".mirror." in line and ": " in line:
            name, value = line.rsplit(": ", 1)
            found[name.rsplit(".", 1)[1]] = found.get(name.rsplit(".", 1)[1], 0) + int(value)
    return found


def print_table(result: dict) -> None:
    rows = []
    for case in result["cases"]:
        lat = case["latency_us"] or {}
        rows.append([case["case"], f"{case['rate']:,}", *(f"{lat.get(p, 0) / 1000:.2f}" for p in ("p50", "p90", "p99")),
                     f"{case['cpu_us_per_req']:.1f}", f"{case['max_rps']:,.0f}", str(case["errors"]),
                     str(case["mirror_stats"].get("shadows_dropped_overflow", "-"))])
    print("== Latency at a fixed rate (ms), and CPU per request at saturation")
    print(report.render_table(["route", "req/s", "p50", "p90", "p99", "CPU us/req", "max req/s", "errors", "copies dropped"],
                              rows, markdown=False))


def run(args) -> int:
    sizes = SMOKE if args.smoke else FULL
    settings = Settings(rounds=1, fixed_duration=sizes["fixed_duration"], warmup=sizes["warmup"],
                        wrk_duration=sizes["wrk_duration"])

    def measure(bench: Bench) -> dict:
        hanging = HangingMirror()
        try:
            return {"cases": [_case(bench, sizes, hanging.port, index) for index in range(len(CASES))]}
        finally:
            hanging.close()
    return run_standalone("route-costs", args, sizes, settings, measure, print_table, with_loadgen=True)
