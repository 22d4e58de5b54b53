"""A VM proxy's readiness probe: it checks its application as its WorkloadGroup's `probe` says
and reports transitions to the control server, which makes the auto-registered WorkloadEntry an
endpoint only while healthy (Istio's agent health checking, pkg/istio-agent/health).

Kubernetes' probe semantics: after `initialDelaySeconds`, one check every `periodSeconds`, each
given `timeoutSeconds`; `successThreshold` consecutive successes make it healthy and
`failureThreshold` consecutive failures unhealthy; the state is unknown (not ready) until the
first decision. httpGet is healthy on a 2xx or 3xx answer; as the kubelet's, an HTTPS probe does
not verify the application's certificate (it asks "is it up", and sends nothing secret); the
host defaults to the workload's address. tcpSocket is healthy when a connection opens (host
default: localhost). exec is healthy when the command exits 0 within the timeout (killed after).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import Callable

from pymesh.api import model

log = logging.getLogger("pymesh.proxy.health")

Report = Callable[[bool, str], None]


@dataclass
class Thresholds:
    """Consecutive results -> a decided state (None: undecided yet)."""

    success: int
    failure: int
    state: bool | None = None
    _run: int = 0  # consecutive results disagreeing with `state` (or any, while undecided)
    _last: bool | None = None

    def feed(self, ok: bool) -> bool:
        """Whether this result changed the decided state."""
        self._run = self._run + 1 if ok == self._last else 1
        self._last = ok
        if ok == self.state:
            return False
        if self._run >= (self.success if ok else self.failure):
            self.state = ok
            return True
        return False


def group_probe(config: model.MeshConfig) -> model.ReadinessProbe | None:
    """The probe of the WorkloadGroup in a proxy's view (the server sends only its own group)."""
    return next((group.probe for group in config.workload_groups), None)


class HealthProbe:
    """Runs the current probe (none: nothing runs and nothing is reported)."""

    def __init__(self, report: Report, address: str):
        self.report = report
        self.address = address  # the workload's, the default host of an httpGet probe
        self.probe: model.ReadinessProbe | None = None
        self._task: asyncio.Task | None = None

    def update(self, probe: model.ReadinessProbe | None) -> None:
        """Start, change or stop probing (a changed probe starts over, undecided)."""
        if probe == self.probe:
            return
        self.close()
        self.probe = probe
        if probe is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(probe))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self, probe: model.ReadinessProbe) -> None:
        thresholds = Thresholds(probe.success_threshold, probe.failure_threshold)
        await asyncio.sleep(probe.initial_delay_seconds)
        while True:
            try:
                problem = await asyncio.wait_for(check(probe, self.address), probe.timeout_seconds)
            except asyncio.TimeoutError:
                problem = f"probe timed out after {probe.timeout_seconds}s"
            if thresholds.feed(problem is None):
                if problem is None:
                    log.info("application healthy")
                else:
                    log.warning("application unhealthy: %s", problem)
                self.report(problem is None, problem or "")
            await asyncio.sleep(probe.period_seconds)


async def check(probe: model.ReadinessProbe, address: str, local_addr: tuple[str, int] | None = None) -> str | None:
    """One check: None when healthy, else why not. `local_addr` binds the connection's source
    (a sidecar probing its own pod address uses 127.0.0.6, which capture lets through)."""
    if probe.http_get is not None:
        return await _http_get(probe.http_get, probe.http_get.host or address, local_addr)
    if probe.tcp_socket is not None:
        return await _tcp(probe.tcp_socket.host or "127.0.0.1", probe.tcp_socket.port, local_addr)
    return await _exec(probe.exec.command)


async def _tcp(host: str, port: int, local_addr: tuple[str, int] | None = None) -> str | None:
    try:
        _, writer = await asyncio.open_connection(host, port, local_addr=local_addr)
    except OSError as error:
        return f"tcp {host}:{port}: {error.strerror or error}"
    writer.close()
    return None


async def _http_get(action: model.HTTPHealthCheck, host: str, local_addr: tuple[str, int] | None = None) -> str | None:
    context = None
    if action.scheme == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # a liveness check, as the kubelet's
    target = f"{action.scheme.lower()}://{host}:{action.port}{action.path or '/'}"
    try:
        reader, writer = await asyncio.open_connection(host, action.port, ssl=context, local_addr=local_addr)
    except (OSError, ssl.SSLError) as error:
        return f"GET {target}: {getattr(error, 'strerror', None) or error}"
    try:
        headers = {"host": f"{host}:{action.port}", "user-agent": "pymesh-probe/1", "connection": "close"}
        for header in action.headers:
            headers[header.name.lower()] = header.value
        head = f"GET {action.path or '/'} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(head.encode("latin-1") + b"\r\n")
        line = await reader.readuntil(b"\r\n")
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
        return f"GET {target}: {error}"
    finally:
        writer.close()
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return f"GET {target}: not an HTTP answer"
    status = int(parts[1])
    return None if 200 <= status < 400 else f"GET {target}: HTTP {status}"


async def _exec(command: tuple[str, ...]) -> str | None:
    try:
        process = await asyncio.create_subprocess_exec(*command, stdin=asyncio.subprocess.DEVNULL,
                                                       stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=asyncio.subprocess.DEVNULL)
    except OSError as error:
        return f"exec {command[0]}: {error.strerror or error}"
    try:
        code = await process.wait()
    except asyncio.CancelledError:  # the timeout: the command does not outlive its check
        process.kill()
        await process.wait()
        raise
    return None if code == 0 else f"exec {command[0]}: exit status {code}"
