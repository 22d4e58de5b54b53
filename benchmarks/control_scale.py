"""`python -m benchmarks control`: how one control server copes with 100, 1000 and 2000 proxies.

Per case (a number of proxies, and whether Sidecars scope them): a fresh `pymesh control serve`
(pinned to the proxy CPU) serving controlgen's mesh, the simulated proxies of controlproxies.py in
several worker processes (pinned to the load CPU), all connected and synced; then, several times,
svc-0's VirtualService is rewritten (an atomic rename; its monotonic time is the start) and every
affected proxy's ACK of the new version is timed. Convergence per proxy = its ACK's time minus
the rename's: the server's file polling and debounce included, as a user editing YAML sees it.
The server's own pymesh_control_convergence_seconds (first detection to last ACK) is read from
/metrics beside it, and its CPU time and RSS from /proc.
"""

from __future__ import annotations

import datetime as dt
import http.client
import io
import json
import os
import pstats
import re
import resource
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import RESULTS_DIR, controlgen, controlreport, machine, procs, procstat, results
from benchmarks.runner import cpu_sets, git_state
from benchmarks.stats import percentile, summarize

ROOT = Path(__file__).resolve().parent.parent
FULL = {"proxies": (100, 1000, 2000), "changes": 5, "scoped_proxies": 1000}
SMOKE = {"proxies": (100,), "changes": 1, "scoped_proxies": 100}
READY_TIMEOUT = 30.0
MAX_PROXIES = 100_000  # the --max-connections the server under test gets (the counts are --proxies)
WAIT_TIMEOUT = 30.0  # for one change to reach every affected proxy
SETTLE = 0.3  # seconds between reading the state and making a change


class HarnessError(RuntimeError):
    """Something other than a figure went wrong: a process died, proxies did not connect."""


# --- the server ----------------------------------------------------------------------------------


class Server:
    def __init__(self, config_dir: Path, workdir: Path, name: str, cpus: str | None, profile: Path | None):
        command = ["-m", "pymesh", "control", "serve", "--config-dir", str(config_dir),
                   "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                   # every simulated proxy connects from 127.0.0.1: lift the per-source and total caps
                   "--max-connections", str(MAX_PROXIES), "--max-connections-per-source", str(MAX_PROXIES),
                   # the simulated proxies speak plaintext h2: this measures pushing, not handshakes
                   "--insecure"]
        if profile is not None:
            command = ["-m", "cProfile", "-o", str(profile), *command]
        self.profile = profile
        self.proc = procs.start(name, [sys.executable, *command], workdir, cpus)
        self.port, self.admin = self._ports()
        self.nofile = self._raise_nofile()

    def check_nofile(self, proxies: int) -> None:
        if self.nofile["now"][0] < proxies + 64:
            raise HarnessError(f"the control server may open {self.nofile['now'][0]} files (RLIMIT_NOFILE, hard "
                               f"limit {self.nofile['now'][1]}): too few for {proxies} proxies")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _ports(self) -> tuple[int, int]:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            found = re.search(r"serving on \S+:(\d+), admin on \S+:(\d+)", self.proc.log_tail(400))
            if found:
                return int(found[1]), int(found[2])
            if self.proc.popen.poll() is not None:
                raise HarnessError(f"control server exited with {self.proc.popen.returncode}:\n{self.proc.log_tail()}")
            time.sleep(0.05)
        raise HarnessError(f"control server not serving after {READY_TIMEOUT:.0f}s:\n{self.proc.log_tail()}")

    def _raise_nofile(self) -> dict:
        """Its soft RLIMIT_NOFILE up to the hard limit (one descriptor per proxy)."""
        before = resource.prlimit(self.pid, resource.RLIMIT_NOFILE)
        if before[0] < before[1]:
            resource.prlimit(self.pid, resource.RLIMIT_NOFILE, (before[1], before[1]))
        return {"before": list(before), "now": list(resource.prlimit(self.pid, resource.RLIMIT_NOFILE))}

    def get(self, path: str, timeout: float = 10.0) -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=timeout)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise HarnessError(f"GET {path}: {response.status}")
            return body
        except (OSError, http.client.HTTPException) as exc:
            raise HarnessError(f"GET {path} from the control server: {exc}\n{self.proc.log_tail()}") from None
        finally:
            conn.close()

    def version(self) -> int:
        return int(json.loads(self.get("/status"))["version"])

    def metrics(self) -> dict[str, float]:
        found = {}
        for line in self.get("/metrics").decode().splitlines():
            if line.startswith("pymesh_control_") and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                found[key] = float(value)
        return found

    def cpu(self) -> float:
        return procstat.cpu_seconds(self.pid)

    def rss_kb(self) -> int:
        return procstat.memory_kb(self.pid).get("VmRSS", 0)

    def stop(self) -> None:
        procs.stop(self.proc, grace=60.0 if self.profile else 5.0)  # cProfile writes its file on the way out
        if self.profile is not None and self.profile.exists():
            self.profile.with_suffix(".txt").write_text(profile_text(self.profile))


def profile_text(path: Path, top: int = 30) -> str:
    """The top of a cProfile file: by own time, and pymesh's functions by cumulative time."""
    out = io.StringIO()
    stats = pstats.Stats(str(path), stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats("pymesh", top)
    return out.getvalue()


# --- the simulated proxies -------------------------------------------------------------------------


class Workers:
    """Worker processes of controlproxies.py, each with a share of the proxies; one JSON line of
    command out, one of reply back, every read bounded."""

    def __init__(self, port: int, count: int, processes: int, workdir: Path, cpus: str | None):
        processes = max(1, min(processes, count))
        shares = [count // processes + (1 if k < count % processes else 0) for k in range(processes)]
        self.ranges: list[range] = []
        self.procs: list[procs.Proc] = []
        self._buffers: dict[int, bytes] = {}
        first = 0
        for k, share in enumerate(shares):
            log = workdir / f"proxies-{k}.log"
            with open(log, "wb") as err:
                popen = subprocess.Popen(
                    procs.pinned([sys.executable, "-m", "benchmarks.controlproxies", "--port", str(port),
                                  "--first", str(first), "--count", str(share)], cpus),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=ROOT, start_new_session=True)
            self.procs.append(procs.adopt(f"proxies-{k}", popen, log))
            self.ranges.append(range(first, first + share))
            first += share
        self.started = [self._read(p, READY_TIMEOUT) for p in self.procs]

    def ask(self, commands: list[dict], timeout: float) -> list[dict]:
        """Send each worker its command, then read every reply (all within `timeout`)."""
        for proc, command in zip(self.procs, commands):
            try:
                proc.popen.stdin.write((json.dumps(command) + "\n").encode())
                proc.popen.stdin.flush()
            except OSError as exc:
                raise HarnessError(f"{proc.name}: {exc}\n{proc.log_tail()}") from None
        deadline = time.monotonic() + timeout
        return [self._read(p, max(0.1, deadline - time.monotonic())) for p in self.procs]

    def ask_all(self, command: dict, timeout: float) -> list[dict]:
        return self.ask([command] * len(self.procs), timeout)

    def _read(self, proc: procs.Proc, timeout: float) -> dict:
        fd = proc.popen.stdout.fileno()
        buf = self._buffers.get(fd, b"")
        deadline = time.monotonic() + timeout
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError(f"{proc.name}: no reply within {timeout:.0f}s\n{proc.log_tail()}")
            if select.select([fd], [], [], min(left, 0.5))[0]:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise HarnessError(f"{proc.name} exited ({proc.popen.poll()})\n{proc.log_tail()}")
                buf += chunk
        line, _, self._buffers[fd] = buf.partition(b"\n")
        return json.loads(line)

    def cpu(self) -> float:
        """CPU seconds used so far by all worker processes."""
        return procstat.total_cpu_seconds([p.pid for p in self.procs])

    def stop(self) -> None:
        for proc in self.procs:
            try:
                proc.popen.stdin.write(b'{"cmd": "quit"}\n')
                proc.popen.stdin.flush()
            except OSError:
                pass
        deadline = time.monotonic() + 10.0
        for proc in self.procs:  # let each close its connections and exit; then make sure
            try:
                proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            procs.stop(proc, grace=5.0)


# --- one case ------------------------------------------------------------------------------------


def _wait_quiet(server: Server, proxies: int, timeout: float = 60.0) -> int:
    """The version once every proxy is connected and no new generation came for a second (the
    registry's bursts of connections are over)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        version = server.version()
        connected = server.metrics().get("pymesh_control_connected_proxies")
        if version == last and connected == proxies:
            return version
        last = version
        time.sleep(1.0)
    raise HarnessError(f"the server did not settle within {timeout:.0f}s (connected: {connected}, of {proxies})")


CONVERGED = "pymesh_control_convergence_seconds_count"


def _delta(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def one_change(server: Server, workers: Workers, step: int, expect: list[set[int]], path: Path) -> dict:
    v0 = server.version()
    m0 = server.metrics()
    time.sleep(SETTLE)
    tmp = controlgen.prepare(path, controlgen.change_text(step))
    clients0 = workers.cpu()
    cpu0 = server.cpu()
    written = time.monotonic()
    os.replace(tmp, path)
    replies = workers.ask([{"cmd": "wait", "after": v0, "expect": sorted(e), "timeout": WAIT_TIMEOUT}
                           for e in expect], WAIT_TIMEOUT + 15)
    deadline = time.monotonic() + 10.0
    m1 = server.metrics()
    while _delta(m0, m1, CONVERGED) < 1 and time.monotonic() < deadline:  # its last ACK processed
        time.sleep(0.02)
        m1 = server.metrics()
    cpu1, ended = server.cpu(), time.monotonic()
    clients1 = workers.cpu()
    records = [r for reply in replies for r in reply["records"]]
    expected = set().union(*expect)
    got = {r[0]: r for r in records}
    missing = sorted(expected - set(got))
    if missing:
        raise HarnessError(f"change {step}: {len(missing)} affected proxies never received it (e.g. {missing[:5]})")
    converge = sorted(got[i][4] - written for i in expected)
    received = sorted(got[i][3] - written for i in expected)
    versions = sorted({got[i][1] for i in expected})
    weights = list(controlgen.WEIGHTS[1 + (step - 1) % (len(controlgen.WEIGHTS) - 1)])
    decoded = [reply["decoded"].get(str(v)) for reply in replies for v in versions if str(v) in reply["decoded"]]
    d_count = _delta(m0, m1, CONVERGED)
    d_sum = _delta(m0, m1, "pymesh_control_convergence_seconds_sum")
    pushes = sum(_delta(m0, m1, f'pymesh_control_pushes_total{{type="{t}"}}') for t in ("snapshot", "endpoints"))
    return {
        "step": step, "base_version": v0, "versions": versions, "affected": len(expected),
        "pushed": len(records), "pushed_unaffected": len(set(got) - expected),
        "types": sorted({r[2] for r in records}),
        "content_ok": bool(decoded) and all(d and d.get("ok") and d.get("weights") == weights for d in decoded),
        "convergence_ms": {p: 1000 * percentile(converge, q) for p, q in (("p50", 50), ("p99", 99), ("max", 100))},
        "first_received_ms": 1000 * received[0], "last_received_ms": 1000 * received[-1],
        "server_convergence_ms": 1000 * d_sum / d_count if d_count else None, "server_generations": d_count,
        "server_pushes": pushes, "cpu_ms": 1000 * (cpu1 - cpu0), "window_s": ended - written,
        "clients_cpu_ms": 1000 * (clients1 - clients0),
        "rss_kb": server.rss_kb(), "rss_hwm_kb": procstat.memory_kb(server.pid).get("VmHWM", 0),
    }


def run_case(proxies: int, scoped: bool, changes: int, opts: dict) -> dict:
    variant = "scoped" if scoped else "all"
    name = f"control-{proxies}-{variant}"
    config_dir = opts["workdir"] / name
    controlgen.write_mesh(config_dir, scoped)
    profile = opts["profile_dir"] / f"{name}.prof" if opts["profile_dir"] else None
    server = Server(config_dir, opts["workdir"], name, opts["server_cpus"], profile)
    workers = None
    try:
        server.check_nofile(proxies)
        _wait_quiet(server, 0)
        time.sleep(0.5)
        rss_empty = server.rss_kb()
        workers = Workers(server.port, proxies, opts["processes"], opts["workdir"], opts["load_cpus"])
        started = time.monotonic()
        connect_timeout = 30.0 + proxies * 0.05
        connected = workers.ask_all({"cmd": "connect", "concurrency": opts["concurrency"], "timeout": connect_timeout,
                                     "window": opts["client_window"]},
                                    connect_timeout + 15)
        connect_s = max(c["done_at"] for c in connected) - started
        failed = sum(c["failed"] for c in connected)
        if failed:
            errors: dict[str, int] = {}
            for c in connected:
                for why, count in c["errors"].items():
                    errors[why] = errors.get(why, 0) + count
            raise HarnessError(f"{failed} of {proxies} simulated proxies did not connect: {errors}")
        _wait_quiet(server, proxies)
        rss_connected = server.rss_kb()
        cpu0 = server.cpu()
        time.sleep(1.0)
        idle_cpu_ms_per_s = 1000 * (server.cpu() - cpu0)
        expect = [{i for i in r if controlgen.affected(i, scoped)} for r in workers.ranges]
        done = []
        for step in range(1, changes + 1):
            change = one_change(server, workers, step, expect, controlgen.vs_path(config_dir))
            change["cpu_ms_net"] = max(0.0, change["cpu_ms"] - idle_cpu_ms_per_s * change["window_s"])
            change["cpu_us_per_push"] = 1000 * change["cpu_ms_net"] / change["pushed"] if change["pushed"] else None
            done.append(change)
        state = workers.ask_all({"cmd": "state"}, 30)
        ended = sum(s["ended"] for s in state)
        if ended:
            raise HarnessError(f"{ended} simulated proxies lost their stream: {[s['ended_why'] for s in state]}")
    finally:
        if workers is not None:
            workers.stop()
        server.stop()
    figures = {
        "convergence_p50_ms": [c["convergence_ms"]["p50"] for c in done],
        "convergence_p99_ms": [c["convergence_ms"]["p99"] for c in done],
        "convergence_max_ms": [c["convergence_ms"]["max"] for c in done],
        "server_convergence_ms": [c["server_convergence_ms"] for c in done],
        "first_received_ms": [c["first_received_ms"] for c in done],
        "cpu_ms_per_push_all": [c["cpu_ms_net"] for c in done],
        "cpu_us_per_proxy_push": [c["cpu_us_per_push"] for c in done],
        "rss_mb": [c["rss_kb"] / 1024 for c in done],
        "clients_cpu_ms": [c["clients_cpu_ms"] for c in done],
    }
    return {
        "name": name, "variant": variant, "proxies": proxies, "affected": done[0]["affected"] if done else 0,
        "processes": len(workers.procs), "server_nofile": server.nofile, "client_nofile": workers.started[0]["nofile"],
        "connect_s": connect_s, "rss_mb_empty": rss_empty / 1024, "rss_mb_connected": rss_connected / 1024,
        "rss_kb_per_proxy": (rss_connected - rss_empty) / proxies, "idle_cpu_ms_per_s": idle_cpu_ms_per_s,
        "rss_mb_peak": max((c["rss_hwm_kb"] for c in done), default=0) / 1024,
        "changes": done, "summary": {k: summarize(v) for k, v in figures.items()},
        "profile": str(profile) if profile else None,
    }


# --- the command ---------------------------------------------------------------------------------


def _sizes(text: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    if not text:
        return default
    sizes = tuple(int(s) for s in text.split(",") if s.strip())
    if not sizes or min(sizes) < 1:
        raise ValueError(f"--proxies: expected counts like 100,1000, got {text!r}")
    return sizes


def run(args) -> int:
    plan = SMOKE if args.smoke else FULL
    try:
        sizes = _sizes(args.proxies, plan["proxies"])
    except ValueError as exc:
        print(f"control: {exc}", file=sys.stderr)
        return 2
    changes = args.changes or plan["changes"]
    scoped = plan["scoped_proxies"] if args.scoped_proxies is None else args.scoped_proxies
    procs.install_cleanup()
    load_cpus, server_cpus = cpu_sets()
    if load_cpus:
        os.sched_setaffinity(0, {int(load_cpus)})
    workdir = Path(tempfile.mkdtemp(prefix="pymesh-control-"))
    profile_dir = Path(args.profile).resolve() if args.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
    opts = {"workdir": workdir, "load_cpus": load_cpus, "server_cpus": server_cpus, "processes": args.processes,
            "concurrency": 16, "profile_dir": profile_dir, "client_window": args.client_window}
    started = dt.datetime.now(dt.timezone.utc)
    cases = []
    try:
        for n in sizes:
            cases.append(run_case(n, False, changes, opts))
            print(controlreport.case_line(cases[-1]), flush=True)
        if scoped:
            cases.append(run_case(scoped, True, changes, opts))
            print(controlreport.case_line(cases[-1]), flush=True)
    except HarnessError as exc:
        print(f"control: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"schema": 1, "kind": "control", "date": started.isoformat(timespec="seconds"),
              "command": shlex.join(["python", "-m", "benchmarks", *sys.argv[1:]]), "machine": machine.describe(),
              "git": git_state(),
              "settings": {"proxies": list(sizes), "changes": changes, "scoped_proxies": scoped,
                           "processes": args.processes, "client_window": args.client_window,
                           "load_cpus": load_cpus, "server_cpus": server_cpus,
                           "services": controlgen.SERVICES, "profile": str(profile_dir) if profile_dir else None},
              "cases": cases}
    path = results.write(result, Path(args.out) if args.out else RESULTS_DIR, prefix="control-",
                         suffix="-smoke" if args.smoke else "")
    print()
    print(controlreport.render(result, markdown=False))
    print(f"result: {path}")
    return 0
