"""The control server as a real subprocess on ports it picks (listen on port 0; it prints the
ports it got), YAML builders, and bounded waits on its /status."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pymesh.cli

from ports import free_port  # noqa: F401  (tests/ports.py; the tests import it from here)

READY_TIMEOUT = 20.0
WAIT = 5.0


def cli() -> list[str]:
    """`pymesh` if it has the control subcommand, else the control module's own entry point."""
    if "pymesh.control.command" in pymesh.cli.SUBCOMMAND_MODULES:
        return [sys.executable, "-m", "pymesh", "control"]
    return [sys.executable, "-m", "pymesh.control.command"]


class ControlServer:
    """`secure=False` (the default for the protocol tests, whose client speaks plaintext h2):
    `--insecure`; the identity tests pass secure=True."""

    def __init__(self, config_dir: Path, log: Path, grace: float = 5.0, data_dir: Path | None = None, *extra: str,
                 secure: bool = False):
        self.config_dir = config_dir
        self.log_path = log
        self.secure = secure
        self.args = ["--config-dir", str(config_dir), "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
                     "--grace", str(grace), *extra, *(() if secure else ("--insecure",))]
        if data_dir is not None:
            self.args += ["--data-dir", str(data_dir)]
        self.proc: subprocess.Popen | None = None
        self.port = self.admin_port = self.webhook_port = 0

    def start(self) -> ControlServer:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([*cli(), "serve", *self.args], stdout=subprocess.PIPE, stderr=self._log)
        line = _readline(self.proc, READY_TIMEOUT)
        found = re.fullmatch(r"pymesh control: serving on \S+:(\d+), admin on \S+:(\d+)", line)
        assert found, f"unexpected first line from the control server: {line!r}"
        self.port, self.admin_port = int(found[1]), int(found[2])
        if "--webhook-listen" in self.args:
            line = _readline(self.proc, READY_TIMEOUT)
            found = re.fullmatch(r"pymesh control: webhooks on https://\S+:(\d+)", line)
            assert found, f"unexpected webhook line from the control server: {line!r}"
            self.webhook_port = int(found[1])
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None and self.proc.stdout:
            self.proc.stdout.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=WAIT) as response:
            return response.read()

    def status(self) -> dict:
        return json.loads(self.get("/status"))

    def proxy(self, node_id: str) -> dict | None:
        return next((p for p in self.status()["proxies"] if p["id"] == node_id), None)

    def wait_status(self, predicate, what: str, timeout: float = WAIT) -> dict:
        """Poll /status until `predicate(status)` holds (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; /status: {json.dumps(status)[:2000]}")
            time.sleep(0.02)

    def wait_proxy(self, node_id: str, what: str, predicate, timeout: float = WAIT) -> dict:
        status = self.wait_status(lambda s: any(p["id"] == node_id and predicate(p) for p in s["proxies"]),
                                  f"{node_id}: {what}", timeout)
        return next(p for p in status["proxies"] if p["id"] == node_id)

    def metric(self, name: str) -> float | None:
        """A sample's value from /metrics ("name{labels}" exactly as exposed)."""
        for line in self.get("/metrics").decode().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if key == name:
                return float(value)
        return None


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    buf = b""
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None and not select.select([fd], [], [], 0)[0]:
            raise AssertionError(f"control server did not start (exit {proc.poll()})")
        if select.select([fd], [], [], min(left, 0.5))[0]:
            chunk = os.read(fd, 1)  # byte by byte: what follows the line stays in the pipe for the next call
            if not chunk and proc.poll() is not None:
                raise AssertionError(f"control server exited with {proc.returncode} before it was ready")
            buf += chunk
    return buf.decode().splitlines()[0]


# --- YAML ----------------------------------------------------------------------------------------


def service_entry(name: str, host: str, ns: str = "default", port: int = 9080, selector: dict | None = None,
                  endpoints: list[str] = (), export_to: list[str] = ()) -> str:
    lines = [
        "apiVersion: networking.istio.io/v1", "kind: ServiceEntry",
        f"metadata:\n  name: {name}\n  namespace: {ns}", "spec:", f"  hosts: [{host}]",
        f"  ports:\n  - number: {port}\n    name: http\n    protocol: HTTP",
        "  location: MESH_INTERNAL", "  resolution: STATIC",
    ]
    if selector:
        lines.append("  workloadSelector:\n    labels:\n" + "".join(f"      {k}: {v}\n" for k, v in selector.items()).rstrip())
    if endpoints:
        lines.append("  endpoints:\n" + "\n".join(f"  - address: {a}" for a in endpoints))
    if export_to:
        lines.append(f"  exportTo: [{', '.join(repr(e) for e in export_to)}]")
    return "\n".join(lines) + "\n"


def workload_entry(name: str, address: str, ns: str = "default", **labels: str) -> str:
    text = f"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  address: {address}\n"
    if labels:
        text += "  labels:\n" + "".join(f"    {k}: {v}\n" for k, v in labels.items())
    return text


def virtual_service(name: str, host: str, dest: str, ns: str = "default", timeout: str = "5s") -> str:
    return (
        f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\n  namespace: {ns}\n"
        f"spec:\n  hosts: [{host}]\n  http:\n  - timeout: {timeout}\n    route:\n    - destination:\n        host: {dest}\n"
    )


def sidecar(name: str, ns: str, hosts: list[str], **selector: str) -> str:
    text = f"apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n"
    if selector:
        text += "  workloadSelector:\n    labels:\n" + "".join(f"      {k}: {v}\n" for k, v in selector.items())
    return text + "  egress:\n  - hosts:\n" + "".join(f"    - \"{h}\"\n" for h in hosts)


def write(path: Path, text: str) -> Path:
    """Replace a file's content in one step (write a temporary file, rename), as editors do."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


