"""The frame of a benchmark that runs pymesh on its own rather than as rows of the table
(`scale`, `route-costs`): the pymesh check, a work directory, the CPU split, the DMA-latency hold
and the benchmark's nginx upstream, set up and torn down one way; the result written and printed
one way."""

from __future__ import annotations

import datetime as dt
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Callable

from benchmarks import RESULTS_DIR, dmalatency, loadgen, machine, procs, results
from benchmarks.measure import Bench, Settings, start_upstream
from benchmarks.peers import Unavailable, find_pymesh
from benchmarks.runner import cpu_sets


def run_standalone(name: str, args, sizes: dict, settings: Settings, measure: Callable[[Bench], dict],
                   print_tables: Callable[[dict], None], with_loadgen: bool = False) -> int:
    """`measure(bench)` with nginx up returns the result's figures; exit status as the CLI's."""
    try:
        find_pymesh()
    except Unavailable as exc:
        print(f"{name}: unavailable: {exc}", file=sys.stderr)
        return 0 if args.smoke else 2
    procs.install_cleanup()
    load_cpus, proxy_cpus = cpu_sets()
    workdir = Path(tempfile.mkdtemp(prefix=f"pymesh-{name}-"))
    loadgen_binary = loadgen.build(workdir / "build") if with_loadgen else Path()
    bench = Bench(settings, workdir, loadgen_binary, load_cpus, proxy_cpus, args.port_offset)
    started = dt.datetime.now(dt.timezone.utc)
    try:
        if load_cpus:
            os.sched_setaffinity(0, {int(load_cpus)})
        with dmalatency.hold_zero(not args.no_cpu_dma_latency) as dma_state:
            upstream = start_upstream(bench)
            try:
                figures = measure(bench)
            finally:
                procs.stop(upstream)
    except (procs.StartError, RuntimeError) as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    result = {"schema": 1, "kind": name, "date": started.isoformat(timespec="seconds"),
              "command": shlex.join(["python", "-m", "benchmarks", *sys.argv[1:]]), "machine": machine.describe(),
              "settings": {**sizes, "cpu_dma_latency": dma_state, "load_cpus": load_cpus, "proxy_cpus": proxy_cpus},
              **figures}
    path = results.write(result, Path(args.out) if args.out else RESULTS_DIR, prefix=f"{name}-")
    print_tables(result)
    print(f"result: {path}")
    return 0
