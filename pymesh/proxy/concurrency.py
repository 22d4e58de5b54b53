"""How many worker processes a proxy runs: --concurrency, else the ProxyConfig that applies to it
(pymesh.routing.proxy_config), else 1; 0 means one per CPU this process may run on, as Istio.

Istio reads ProxyConfig when the proxy starts, and so does pymesh: from the static files, or the
snapshot a control-server proxy persisted (--data-dir). A control-server proxy with neither
learns it from its first snapshot: when that asks for other than one worker, the proxy, not yet
ready and serving nothing, saves the snapshot and re-executes itself once with that many (a
private data directory, removed at exit, holds the snapshot when it has no --data-dir). A later
change is logged and applies at the next restart, as in Istio.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from typing import Awaitable, Callable

from pymesh.api import model
from pymesh.proxy.control_client import SnapshotStore
from pymesh.routing.proxy_config import effective
from pymesh.routing.snapshot import ProxyIdentity

log = logging.getLogger("pymesh.proxy")

PRIVATE_DATA_DIR = "PYMESH_PRIVATE_DATA_DIR"  # set for a re-executed proxy whose data dir is its own
Apply = Callable[[model.MeshConfig, str], Awaitable[None]]


def resolve_concurrency(given: int | None, config: model.MeshConfig, identity: ProxyIdentity) -> tuple[int, str]:
    """(workers, the ProxyConfig that decided it, or "")."""
    source = ""
    if given is None:
        applied = effective(config.proxy_configs, identity.namespace, identity.labels)
        given, source = (1, "") if applied.concurrency is None else (applied.concurrency, applied.source)
    return given or len(os.sched_getaffinity(0)), source


def watch_concurrency(apply: Apply, identity: ProxyIdentity, running: int, data_dir: str | None,
                      restart_on_first: bool) -> Apply:
    """`apply`, then: on the first snapshot (with `restart_on_first`) a re-execution with the
    workers it asks for; on later ones, a log line when the asked-for count changes."""
    state = {"first": restart_on_first, "logged": running}

    async def applied(config: model.MeshConfig, version: str) -> None:
        await apply(config, version)
        wanted, _ = resolve_concurrency(None, config, identity)
        if state["first"]:
            state["first"] = False
            if wanted != running:
                _restart(config, version, wanted, data_dir)
        elif wanted != state["logged"]:
            state["logged"] = wanted
            log.warning("ProxyConfig now asks for %d workers; this proxy runs %d until its next restart "
                        "(Istio applies ProxyConfig at restart too)", wanted, running)

    return applied


def _restart(config: model.MeshConfig, version: str, workers: int, data_dir: str | None) -> None:
    env = dict(os.environ)
    if data_dir is None:
        data_dir = tempfile.mkdtemp(prefix="pymesh-proxy-")
        env["PYMESH_DATA_DIR"] = env[PRIVATE_DATA_DIR] = data_dir
    SnapshotStore(data_dir).save(config, version)
    log.warning("the first snapshot's ProxyConfig asks for %d workers: restarting with them (version %s saved "
                "in %s)", workers, version, data_dir)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:], "--concurrency", str(workers)], env)
