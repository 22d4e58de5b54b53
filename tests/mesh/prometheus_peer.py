"""The real Prometheus binary (Debian's `prometheus`) as a test peer: started on a free loopback
port with a temporary storage directory and a generated config, queried over its HTTP API, and
killed (its process group) at teardown."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from proxy_harness import LOCALHOST, free_ports, wait_until

from pymesh.telemetry.prometheus_config import prometheus_command

BINARY = shutil.which("prometheus")
READY_TIMEOUT = 60.0


class Prometheus:
    def __init__(self, workdir: Path, config: Path) -> None:
        self.port = free_ports(1)[0]
        self.storage = workdir / "prometheus-data"
        self.log_path = workdir / "prometheus.log"
        self.config = config
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def start(self) -> Prometheus:
        argv = prometheus_command(str(self.config), str(self.storage), f"{LOCALHOST}:{self.port}", BINARY)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        wait_until(self._ready, READY_TIMEOUT, 0.2, "Prometheus /-/ready")
        return self

    def _ready(self) -> bool:
        assert self.proc.poll() is None, f"prometheus exited: {self.log()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                return answer.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def api(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        """An instant query's vector (a scalar answer comes back as one sample without labels)."""
        data = self.api("query", query=promql)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        assert data["resultType"] == "vector", data
        return data["result"]

    def active_targets(self) -> list[dict]:
        return self.api("targets", state="active")["activeTargets"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)


def has_data(samples: list[dict]) -> bool:
    """Some sample with a number (NaN is what histogram_quantile and 0/0 give without traffic)."""
    return any(not math.isnan(float(sample["value"][1])) for sample in samples)
