"""One row, one round: start its processes, measure, stop them.

The phases, in order: each fixed rate with the open-loop load generator (latency, CPU/request;
real-time scheduled unless --no-realtime), then wrk's closed-loop maximum (req/s, CPU/request at
saturation), then memory. Proxy CPU is the difference of /proc CPU time over each phase, divided
by the requests completed in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import configs, h2load, loadgen, mesh_certs, noise, procs, procstat, realtime, wrk
from benchmarks.rows import GRPC_APP_PORT, HOST, UPSTREAM_PORT, Row, shifted
from benchmarks.peers import NGINX_UPSTREAM


@dataclass(frozen=True)
class Settings:
    rounds: int
    fixed_duration: float  # seconds per fixed-rate run, warm-up included
    warmup: float  # seconds discarded at the start of each fixed-rate run
    wrk_duration: int  # seconds
    rates: tuple[int, ...] = (1000, 5000)
    wrk_connections: int = 50
    loadgen_connections: int = 16
    ready_timeout: float = 30.0


class NoData(RuntimeError):
    """A phase completed no successful request: the harness (or the row's setup) is broken."""


@dataclass
class Bench:
    """What every row's measurement shares within one run."""

    settings: Settings
    workdir: Path
    loadgen: Path
    load_cpus: str | None  # load generators and the upstream
    proxy_cpus: str | None  # every hop of every row
    port_offset: int = 0
    realtime: bool = False  # fixed-rate phases under SCHED_FIFO (see realtime.py)
    realtime_state: str = "off"  # said in the output
    upstream_pids: list[int] = field(default_factory=list)

    def port(self, base: int) -> int:
        return base + self.port_offset


def upstream_params(bench: Bench) -> dict:
    return {"workdir": bench.workdir, "upstream_port": bench.port(UPSTREAM_PORT),
            "grpc_app_port": bench.port(GRPC_APP_PORT)}


def start_upstream(bench: Bench) -> procs.Proc:
    params = upstream_params(bench)
    response = bench.workdir / "grpc-response"  # the gRPC rows' answer, read by nginx's worker (nobody)
    response.write_bytes(h2load.grpc_frame(h2load.GRPC_MESSAGE))
    response.chmod(0o644)
    bench.workdir.chmod(0o711)
    config = configs.write(NGINX_UPSTREAM.template, params, bench.workdir)
    proc = procs.start("upstream", NGINX_UPSTREAM.argv(NGINX_UPSTREAM.find(), config, params), bench.workdir,
                       bench.load_cpus)
    procs.wait_ready([proc], bench.port(UPSTREAM_PORT), timeout=bench.settings.ready_timeout)
    bench.upstream_pids = procstat.process_tree([proc.pid])
    return proc


def hop_params(bench: Bench, hop) -> dict:
    params = {"workdir": bench.workdir, **shifted(hop.params, bench.port_offset)}
    if "identity" in params:  # an mTLS row's hop: its certificates, and the peer it must see
        params["cert_dir"] = mesh_certs.cert_dir(bench.workdir, params["identity"])
        params["peer_uri"] = mesh_certs.spiffe_uri(params["peer_identity"])
    return params


def start_row(bench: Bench, row: Row) -> list[procs.Proc]:
    """Start the row's hops (last first) and wait until a request through the row succeeds."""
    started: list[procs.Proc] = []
    try:
        for hop in reversed(row.hops):
            params = hop_params(bench, hop)
            config = configs.write(hop.peer.template, params, bench.workdir, f"{hop.name}-{hop.peer.template}")
            started.append(procs.start(hop.name, hop.peer.argv(hop.peer.find(), config, params), bench.workdir,
                                       bench.proxy_cpus))
            if hop.peer.ready_path:
                procs.wait_ready(started, params["admin_port"], hop.peer.ready_path,
                                 timeout=bench.settings.ready_timeout)
        procs.wait_ready(started, bench.port(row.load_port), host=HOST, timeout=bench.settings.ready_timeout)
    except BaseException:
        for proc in started:
            procs.stop(proc)
        raise
    return started


def phase(bench: Bench, pids: list[int], run, requests_of) -> dict:
    """Run one load phase; add the proxy's CPU per request and the machine's noise to its result."""
    before = noise.sample(pids, bench.upstream_pids)
    result = run()
    after = noise.sample(pids, bench.upstream_pids)
    requests = requests_of(result)
    window = noise.between(before, after, noise.parse_cpus(bench.proxy_cpus) if pids else None, requests)
    result["cpu_us_per_req"] = (after.proxy_cpu - before.proxy_cpu) / requests * 1e6 if pids and requests else None
    result["proxy_cpu_util"] = (after.proxy_cpu - before.proxy_cpu) / window["wall_s"] if pids else None
    result["noise"] = window
    return result


def _memory(pids: list[int]) -> dict | None:
    if not pids:
        return None
    processes = []
    for pid in pids:
        try:
            mem = procstat.memory_kb(pid)
        except OSError:
            continue
        processes.append({"pid": pid, "name": procstat.process_name(pid), "rss_kb": mem.get("VmRSS"),
                          "hwm_kb": mem.get("VmHWM")})
    return {"processes": processes, "rss_kb_total": sum(p["rss_kb"] or 0 for p in processes)}


def measure(bench: Bench, row: Row) -> dict:
    """Every figure of one row for one round (raises StartError, Unavailable or NoData)."""
    s = bench.settings
    port = bench.port(row.load_port)
    started = start_row(bench, row)
    try:
        pids = procstat.process_tree([p.pid for p in started])
        record: dict = {"proxy_pids": pids, "fixed": {}}
        for rate in s.rates:
            with realtime.fifo(pids + bench.upstream_pids, bench.realtime):
                result = phase(bench, pids, lambda: _fixed_rate(bench, row, port, rate), lambda r: r["completed"])
            if result["completed"] - result["errors"] <= 0 or not result["latency_us"]:
                raise NoData(f"{row.name}: no successful request at {rate} req/s ({result})")
            record["fixed"][str(rate)] = result
        result = phase(bench, pids, lambda: _maximum(bench, row, port), lambda r: r["requests"])
        if result["requests"] - result["non_2xx"] <= 0:
            raise NoData(f"{row.name}: wrk completed no successful request ({result})")
        record["wrk"] = result
        record["memory"] = _memory(procstat.process_tree([p.pid for p in started]))
        return record
    finally:
        for proc in started:
            procs.stop(proc)


def _fixed_rate(bench: Bench, row: Row, port: int, rate: int) -> dict:
    s = bench.settings
    if row.load in h2load.LOADS:
        return h2load.run(port, s.fixed_duration, HOST, bench.load_cpus, rate, s.warmup, grpc=row.load == "grpc")
    return loadgen.run(bench.loadgen, port, rate, s.fixed_duration, s.warmup, HOST, bench.load_cpus,
                       s.loadgen_connections, fifo=realtime.LOADGEN if bench.realtime else 0)


def _maximum(bench: Bench, row: Row, port: int) -> dict:
    s = bench.settings
    if row.load in h2load.LOADS:
        return h2load.run(port, s.wrk_duration, HOST, bench.load_cpus, grpc=row.load == "grpc")
    return wrk.run(port, s.wrk_duration, HOST, s.wrk_connections, bench.load_cpus)
