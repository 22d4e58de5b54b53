"""A sampling decision from the request id: the same id is always decided the same way, on every
proxy, so a request sampled at the edge is sampled at every hop (as trace ids are).

pluginConfig:
    percentage: how many request ids in a hundred are sampled (0-100, decimals allowed; default 10)
    header:     the request header the decision goes upstream in (default x-sampled: "1" or "0")

Counts pymesh_filter_decided and pymesh_filter_sampled.
"""

from __future__ import annotations

import hashlib

from pymesh.filters import HttpFilter

SCALE = 10_000  # the decision's resolution: 0.01%


def sampled(request_id: str, percentage: float) -> bool:
    """Whether `request_id` falls in the first `percentage` percent of a uniform hash space."""
    digest = hashlib.blake2b(request_id.encode("latin-1"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SCALE < round(percentage * SCALE / 100)


class RequestIdSampling(HttpFilter):
    def setup(self) -> None:
        percentage = self.config.get("percentage", 10)
        if isinstance(percentage, bool) or not isinstance(percentage, (int, float)) or not 0 <= percentage <= 100:
            raise ValueError("pluginConfig.percentage: a number from 0 to 100")
        self.percentage = float(percentage)
        self.header = str(self.config.get("header", "x-sampled"))
        self.decided = self.metrics.counter("decided")
        self.sampled = self.metrics.counter("sampled")

    def on_request_head(self, stream):
        self.decided.inc()
        if sampled(stream.request_id, self.percentage):
            self.sampled.inc()
            stream.request_headers.set(self.header, "1")
        else:
            stream.request_headers.set(self.header, "0")
        return None
