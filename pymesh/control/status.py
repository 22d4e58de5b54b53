"""`pymesh control status`: the server's /status as a table, like `istioctl proxy-status`.

Every value in it came from a proxy or a file name and is shown through `visible`: escape codes,
newlines and other invisible characters appear as escapes, so they cannot forge rows or rewrite
the terminal.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from pymesh.control.escape import visible

COLUMNS = ("NAME", "NAMESPACE", "ADDRESS", "PUSHED", "ACKED", "STATE")


class Unreachable(Exception):
    @classmethod
    def of(cls, url: str, exc: Exception) -> Unreachable:
        return cls(f"cannot reach the control server at {url}: {getattr(exc, 'reason', exc)}")


def admin_url(host: str, port: int, path: str) -> str:
    return f"http://{_join(host, port)}{path}"


def fetch(host: str, port: int, timeout: float = 5.0) -> dict:
    url = admin_url(host, port, "/status")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise Unreachable.of(url, exc) from None


def format_status(status: dict) -> str:
    rows = [COLUMNS] + [_row(p) for p in status.get("proxies", [])]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "   " + row[-1] for row in rows]
    lines = [line.rstrip() for line in lines]
    lines.insert(0, f"config version {_text(status.get('version', '?'))}, {len(rows) - 1} proxies")
    rejected = status.get("rejected", [])
    if rejected:
        lines += ["", "REJECTED FILES (their last good version stays in force):"]
        for entry in rejected:
            lines.append(f"  {_text(entry['file'])}")
            lines += [f"    {_text(error)}" for error in entry["errors"]]
    resources = status.get("rejected_resources", [])
    if resources:
        lines += ["", "REJECTED KUBERNETES RESOURCES (their last good version stays in force):"]
        for entry in resources:
            lines.append(f"  {_text(_resource(entry))}")
            lines += [f"    {_text(error)}" for error in entry.get("errors", [])]
    if status.get("kubernetes_api"):
        lines += ["", f"KUBERNETES (API server {_text(status['kubernetes_api'])}):"]
        lines += [f"  {_text(_informer(kind))}" for kind in status.get("kubernetes", []) if not kind.get("missing")]
    missing = [".".join(filter(None, (kind.get("resource", "?"), kind.get("group"))))  # kubectl's virtualservices.networking.istio.io
               for kind in status.get("kubernetes", []) if kind.get("missing")]
    if missing:
        lines += ["", f"KUBERNETES: not served (CRD not installed?): {_text(', '.join(missing))}"]
    objects = status.get("gateway_api", [])
    if objects:
        lines += ["", "GATEWAY API:"]
        lines += [f"  {_text(line)}" for obj in objects for line in _object_lines(obj)]
    return "\n".join(lines)


def _object_lines(obj: dict) -> list[str]:
    """One line per object and per listener or parent: each condition as Type=Status(Reason)."""
    def conds(entry: dict) -> str:
        return ", ".join(f"{c['type']}={c['status']}({c['reason']})" for c in entry.get("conditions", []))

    where = _resource(obj)
    lines = [f"{where}: {conds(obj)}"] if obj.get("conditions") else []
    lines += [f"{where} listener {l.get('name')} ({l.get('attachedRoutes', 0)} routes): {conds(l)}"
              for l in obj.get("listeners", [])]
    lines += [f"{where} parent {p.get('parentRef')}: {conds(p)}" for p in obj.get("parents", [])]
    return lines


def _informer(kind: dict) -> str:
    """One watched resource type: synced or not, how many objects, the last error."""
    where = f"{kind.get('resource', '?')}{' in ' + kind['namespace'] if kind.get('namespace') else ''}"
    state = "synced" if kind.get("synced") else "NOT SYNCED"
    error = f"; last error: {kind['lastError']}" if kind.get("lastError") else ""
    return f"{where}: {state}, {kind.get('objects', 0)} objects{error}"


def _resource(entry: dict) -> str:
    namespace = entry.get("namespace")
    return f"{entry.get('kind')} {namespace + '/' if namespace else ''}{entry.get('name')}"


def _row(proxy: dict) -> tuple[str, ...]:
    state = proxy.get("state", "?")
    if state == "NACKED" and proxy.get("error"):
        state = f"NACKED: {proxy['error']}"
    if not proxy.get("connected", True):
        state += " (disconnected)"
    if proxy.get("workload_group"):
        entry = proxy.get("workload_entry")
        state += f"; WorkloadEntry {entry}" if entry else f"; not registered: {proxy.get('not_registered')}"
    addresses = proxy.get("addresses") or ["-"]
    cells = (
        proxy.get("id", "?"),
        proxy.get("namespace", "?"),
        addresses[0],
        proxy.get("pushed_version") or "-",
        proxy.get("acked_version") or "-",
        state,
    )
    return tuple(_text(cell) for cell in cells)


def _text(value: object) -> str:
    """One value as printable text: escaped, at most 200 characters (the rest is in /status)."""
    return visible(value if isinstance(value, str) else json.dumps(value), 200)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
