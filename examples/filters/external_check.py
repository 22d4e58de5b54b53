"""Ask an external HTTP service before letting a request through (Envoy's ext_authz, in a page):
the request waits (PAUSE) while the check runs on the event loop, then goes on or is answered.

pluginConfig:
    url:        the check service, http:// or https:// (verified against the system's CAs)
    timeout_ms: how long a check may take, 1-10000 (default 500)
    headers:    request headers passed on to the service (default [authorization])

The service gets GET <url> with x-original-method, x-original-uri and those headers. Its answer:
2xx lets the request through; 401 or 403 is given to the client as is; anything else, no answer
within the timeout, or no service at all is a failure, and the resource's failStrategy decides it
(FAIL_CLOSE: the client gets 500; FAIL_OPEN: the request goes on). Counts pymesh_filter_allowed,
pymesh_filter_denied and pymesh_filter_failed.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from pymesh.filters import PAUSE, HttpFilter

MAX_TIMEOUT_MS = 10_000
STATUS_LINE_LIMIT = 1024


class CheckFailed(Exception):
    """The check service gave no usable answer."""


class ExternalCheck(HttpFilter):
    def setup(self) -> None:
        url = urlsplit(str(self.config.get("url", "")))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError("pluginConfig.url: an http:// or https:// URL")
        self.host, self.tls = url.hostname, url.scheme == "https"
        self.port = url.port or (443 if self.tls else 80)
        self.target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        timeout_ms = self.config.get("timeout_ms", 500)
        if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or not 1 <= timeout_ms <= MAX_TIMEOUT_MS:
            raise ValueError(f"pluginConfig.timeout_ms: an integer from 1 to {MAX_TIMEOUT_MS}")
        self.timeout = timeout_ms / 1000
        self.forwarded = tuple(str(h).lower() for h in self.config.get("headers", ["authorization"]))
        self.context = ssl.create_default_context() if self.tls else None
        self.allowed = self.metrics.counter("allowed")
        self.denied = self.metrics.counter("denied")
        self.failed = self.metrics.counter("failed")
        self.checks: set[asyncio.Task] = set()  # the running checks (a task nobody holds may be collected)

    def on_request_head(self, stream):
        task = asyncio.get_running_loop().create_task(self.check(stream))
        self.checks.add(task)
        task.add_done_callback(self.checks.discard)
        return PAUSE

    async def check(self, stream) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                status = await self.ask(stream)
        except (OSError, TimeoutError, ValueError, CheckFailed) as error:
            self.failed.inc()
            stream.fail(CheckFailed(f"check service {self.host}:{self.port}: {error!r}"))
            return
        if 200 <= status < 300:
            self.allowed.inc()
            stream.resume()
        elif status in (401, 403):
            self.denied.inc()
            stream.reply(status, "denied by the check service\n")
        else:
            self.failed.inc()
            stream.fail(CheckFailed(f"check service {self.host}:{self.port} answered {status}"))

    async def ask(self, stream) -> int:
        """One GET on a new connection; the status of its answer."""
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.context,
                                                       limit=STATUS_LINE_LIMIT)
        try:
            lines = [f"GET {self.target} HTTP/1.1", f"host: {self.host}", "connection: close",
                     f"x-original-method: {stream.method}", f"x-original-uri: {stream.path}"]
            for name in self.forwarded:
                lines += (f"{name}: {value}" for value in stream.request_headers.get_all(name))
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            status_line = await reader.readline()
            version, _, rest = status_line.decode("latin-1").partition(" ")
            if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
                raise CheckFailed(f"not an HTTP/1.x answer: {status_line[:80]!r}")
            return int(rest[:3])
        finally:
            writer.close()
