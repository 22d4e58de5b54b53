"""Where a pymesh two-hop's CPU goes, hop by hop, immune to the machine's noise: the two-hop of the
benchmark (nginx <- pymesh ingress <- pymesh egress) under a keep-alive HTTP/1.1 load of exactly N
requests on one connection (h2load --h1 -c 1), with one hop run under callgrind, whose
instruction count per request does not move with other programs' load (user space only: syscalls
and page faults do not count; `--cpu` gives the /proc figure that does).

    python -m benchmarks.hop_profile [--between mtls|h2c|plain] [--hop egress|ingress] [-n 1000] [--cpu] [--access-log] [--traced] [--filter]

--between: what the sidecars speak to each other: mtls (the pymesh-mtls-2hop row: ISTIO_MUTUAL,
HTTP/2 inside), h2c (HTTP/2 without TLS: the control that separates TLS from HTTP/2) or plain
(the pymesh-2hop row: HTTP/1.1). --filter gives the egress hop the pymesh-1hop-filter row's one
no-op PythonFilter. The callgrind file is kept for callgrind_annotate.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import configs, mesh_certs, peers, procs, procstat
from benchmarks.rows import HOST

EGRESS = {"mtls": "pymesh-mtls-egress.yaml", "h2c": "pymesh-h2c-egress.yaml", "plain": "pymesh-egress.yaml"}
INGRESS = {"mtls": "pymesh-mtls-ingress.yaml", "h2c": "pymesh-ingress.yaml", "plain": "pymesh-ingress.yaml"}
WARMUP = 500


def _load(port: int, count: int) -> None:
    done = subprocess.run(["h2load", "--h1", "-n", str(count), "-c", "1", "-H", f":authority: {HOST}",
                           f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=600)
    if f"{count} succeeded" not in done.stdout or f"{count} 2xx" not in done.stdout:
        raise SystemExit(f"the load failed:\n{done.stdout[-600:]}")


def _callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120)


def _hop(name: str, template: str, listen: int, upstream: int, admin: int, work: Path, mtls: bool,
         identity: str, peer: str, wrap: list[str], access_log: bool = False, traced: bool = False,
         python_filter: bool = False) -> procs.Proc:
    params = {"listen_port": listen, "upstream_port": upstream, "protocol": "HTTP",
              "peer_uri": mesh_certs.spiffe_uri(peer), "admin_port": admin, "stats_port": admin + 90,
              "health_port": admin + 21}
    if mtls:
        params["cert_dir"] = mesh_certs.cert_dir(work, identity)
    config = configs.write(template, params, work, f"{name}.yaml")
    command = peers._pymesh_traced_argv if traced else peers._pymesh_filter_argv if python_filter else peers._pymesh_argv
    argv = command(peers.find_pymesh(), config, params)
    if access_log and not traced:  # the access log to a file, as the pymesh-1hop-traced row writes it
        argv[argv.index("--access-log") + 1] = str(work / f"{name}-access.log")
    proc = procs.start(name, [*wrap, *argv], work)
    procs.wait_ready([proc], admin, "/ready", timeout=300)
    return proc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hop_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--between", choices=sorted(EGRESS), default="mtls")
    parser.add_argument("--hop", choices=("egress", "ingress"), default="ingress")
    parser.add_argument("-n", type=int, default=1000, help="requests measured (after a warm-up)")
    parser.add_argument("--cpu", action="store_true", help="CPU seconds of both hops from /proc instead")
    parser.add_argument("--port-base", type=int, default=27000)
    parser.add_argument("--access-log", action="store_true", help="both hops write their access log to a file")
    parser.add_argument("--traced", action="store_true", help="both hops as the pymesh-1hop-traced row: tracing at 1%% "
                        "(OTLP to the next hop) and the access log to a file")
    parser.add_argument("--filter", action="store_true", help="the egress hop with one no-op PythonFilter")
    options = parser.parse_args(argv)
    for tool in ("h2load", "nginx") + (() if options.cpu else ("valgrind", "callgrind_control")):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed")
    procs.install_cleanup()
    work = Path(tempfile.mkdtemp(prefix="pymesh-hop-profile-"))
    base, mtls = options.port_base, options.between == "mtls"
    out = work / "callgrind.out"
    wrap = {"ingress": [], "egress": []}
    if not options.cpu:
        wrap[options.hop] = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    try:
        configs.write("nginx-upstream.conf", {"upstream_port": base, "grpc_app_port": base + 3, "workdir": work}, work)
        nginx = procs.start("nginx", peers._nginx_argv("nginx", work / "nginx-upstream.conf", {}), work)
        procs.wait_ready([nginx], base)
        ingress = _hop("ingress", INGRESS[options.between], base + 1, base, base + 10, work, mtls, "server", "client",
                       wrap["ingress"], options.access_log, options.traced)
        egress = _hop("egress", EGRESS[options.between], base + 2, base + 1, base + 11, work, mtls, "client", "server",
                      wrap["egress"], options.access_log, options.traced, options.filter)
        _load(base + 2, WARMUP)
        if options.cpu:
            pids = [ingress.pid, egress.pid]
            before = procstat.total_cpu_seconds(pids)
            _load(base + 2, options.n)
            used = procstat.total_cpu_seconds(pids) - before
            print(f"{options.between}: {used / options.n * 1e6:.1f} us CPU per request, both hops")
            return 0
        target = (ingress if options.hop == "ingress" else egress).pid
        _callgrind(target, "-i", "on")
        _load(base + 2, options.n)
        _callgrind(target, "-d")
        _callgrind(target, "-i", "off")
        dump = max(work.glob("callgrind.out*"), key=lambda path: path.stat().st_mtime)
        annotated = subprocess.run(["callgrind_annotate", str(dump)], capture_output=True, text=True, timeout=300).stdout
        total = next(line for line in annotated.splitlines() if "PROGRAM TOTALS" in line)
        instructions = int(total.split()[0].replace(",", ""))
        print(f"{options.between} {options.hop}: {instructions / options.n:,.0f} instructions per request ({dump})")
        return 0
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
