"""What a restarted control server remembers with --data-dir: the last config version it issued,
the proxies it knew, and the last health each auto-registered VM reported.

Versions then keep increasing across restarts (a proxy never sees "17" mean two different
configurations), and the registered proxies are endpoints again at once, in their grace period,
instead of disappearing from everyone's view until each one reconnects.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile

from pymesh.api import codec
from pymesh.api.wire import Node

log = logging.getLogger("pymesh.control.persist")
FILE = "control-state.json"


def save(data_dir: str, version: int, nodes: list[Node], health: dict[str, tuple[bool, str]] | None = None) -> None:
    """Written to a temporary file and renamed, so a crash leaves the old state or the new."""
    os.makedirs(data_dir, exist_ok=True)
    state = {"version": version, "nodes": codec.encode(nodes)}
    if health:
        state["health"] = {node_id: [healthy, message] for node_id, (healthy, message) in health.items()}
    body = json.dumps(state, separators=(",", ":"))
    fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=".control-state.")
    try:
        with os.fdopen(fd, "w") as stream:
            stream.write(body)
        os.replace(tmp, os.path.join(data_dir, FILE))
    except BaseException:
        os.unlink(tmp)
        raise


def load(data_dir: str) -> tuple[int, list[Node]]:
    """(last version, nodes); (0, []) when there is no state or it cannot be read (logged)."""
    path = os.path.join(data_dir, FILE)
    try:
        with open(path) as stream:
            data = json.load(stream)
        version = data["version"]
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError("version: expected integer")
        return version, list(codec.decode(tuple[Node, ...], data["nodes"], "nodes"))
    except FileNotFoundError:
        return 0, []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: ignoring saved state: %s", path, exc)
        return 0, []


def load_health(data_dir: str) -> dict[str, tuple[bool, str]]:
    """The saved health reports by node id ({} when none or unreadable: the VMs report again)."""
    try:
        with open(os.path.join(data_dir, FILE)) as stream:
            saved = json.load(stream).get("health", {})
        return {str(k): (v[0], v[1]) for k, v in saved.items()
                if isinstance(v, list) and len(v) == 2 and isinstance(v[0], bool) and isinstance(v[1], str)}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}
