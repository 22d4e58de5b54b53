"""Python filters the engine's tests run through a real proxy (imported by the proxy process)."""

from __future__ import annotations

import asyncio
import time

from pymesh.filters import PAUSE, HttpFilter, LocalReply


class Headers(HttpFilter):
    """Changes headers both ways and reports what it can read."""

    def setup(self):
        self.seen = self.metrics.counter("seen")

    def on_request_head(self, stream):
        self.seen.inc()
        headers = stream.request_headers
        headers.set("x-filter-route", f"{stream.route_name};{stream.cluster_name};{stream.direction}")
        headers.set("x-filter-peer", f"{stream.connection.source_address};{stream.connection.tls};{stream.http_version}")
        headers.remove("x-drop-me")
        headers.add("x-filter-config", self.config.get("tag", ""))
        if headers.get("x-new-path"):
            stream.path = headers.get("x-new-path")
        stream.state["asked"] = stream.path

    def on_response_head(self, stream):
        stream.response_headers.set("x-filter-response", f"{stream.response_status}|{stream.state['asked']}")
        stream.response_headers.remove("x-upstream")


class Deny(HttpFilter):
    def on_request_head(self, stream):
        if "x-deny" in stream.request_headers:
            return LocalReply(418, "denied by filter\n", {"x-denied-by": self.name})


class Pause(HttpFilter):
    """Pauses the request, decides in a task (as an external call would), then resumes or replies."""

    def on_request_head(self, stream):
        asyncio.get_running_loop().create_task(self.decide(stream))
        return PAUSE

    async def decide(self, stream):
        for _ in range(3):
            await asyncio.sleep(0)  # other requests run meanwhile
        if stream.request_headers.get("x-decision") == "no":
            stream.reply(403, "no by task\n", [("x-decided", "task")])
            return
        stream.request_headers.set("x-decided", "task")
        stream.resume()


class Body(HttpFilter):
    """Upper-cases the request body piece by piece; buffers the response and appends a marker."""

    def on_request_data(self, stream, data, end):
        return data.upper()

    def on_response_data(self, stream, data, end):
        kept = stream.state.setdefault("response", [])
        kept.append(data)
        if not end:
            return b""
        return b"".join(kept) + b"[filtered]"


class Ends(HttpFilter):
    """Counts the request and response ends (metrics of its own)."""

    def setup(self):
        self.requests = self.metrics.counter("request_ends")
        self.responses = self.metrics.counter("response_ends")
        self.sizes = self.metrics.histogram("request_bytes", (10, 1000))

    def on_request_data(self, stream, data, end):
        stream.state["size"] = stream.state.get("size", 0) + len(data)

    def on_request_end(self, stream, trailers):
        self.requests.inc()
        self.sizes.observe(stream.state.get("size", 0))

    def on_response_end(self, stream, trailers):
        self.responses.inc()


class Raises(HttpFilter):
    """Raises in the hook named by config["hook"] when the request asks for it (x-raise); a data
    hook raises on its last call (the whole request arrived: an HTTP/2 client then gets the 500
    without a reset of the stream it was still sending on)."""

    def _maybe(self, stream, hook):
        if self.config["hook"] == hook and stream.state.get("raise", False):
            raise RuntimeError(f"boom in {hook}")

    def on_request_head(self, stream):
        stream.state["raise"] = "x-raise" in stream.request_headers
        self._maybe(stream, "on_request_head")

    def on_request_data(self, stream, data, end):
        if end:
            self._maybe(stream, "on_request_data")

    def on_response_head(self, stream):
        self._maybe(stream, "on_response_head")

    def on_response_data(self, stream, data, end):
        if len(data) or end:
            self._maybe(stream, "on_response_data")


class Blocks(HttpFilter):
    """Holds the event loop for config["ms"] when the request asks for it (x-block)."""

    def on_request_head(self, stream):
        if "x-block" in stream.request_headers:
            time.sleep(self.config["ms"] / 1000)


class Order(HttpFilter):
    """Appends its tag to x-order on the request and to x-order-response on the response."""

    def on_request_head(self, stream):
        stream.request_headers.add("x-order", self.config["tag"])

    def on_response_head(self, stream):
        stream.response_headers.add("x-order-response", self.config["tag"])


class FailsSetup(HttpFilter):
    def setup(self):
        raise ValueError("bad pluginConfig")
