"""Answer 401 to a request without a known API key (a header), before anything goes upstream.

pluginConfig:
    keys:   the accepted keys (a non-empty list of strings)
    header: the request header carrying the key (default x-api-key)
    strip:  remove the header before the request goes on (default true: the app never sees a key)

Counts pymesh_filter_accepted and pymesh_filter_rejected. The keys are compared in constant time
and never logged; they sit in the configuration, so whoever can read the config can read them.
"""

from __future__ import annotations

import hmac

from pymesh.filters import HttpFilter, LocalReply


class ApiKeyCheck(HttpFilter):
    def setup(self) -> None:
        keys = self.config.get("keys")
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys):
            raise ValueError("pluginConfig.keys: a non-empty list of non-empty strings")
        self.keys = tuple(k.encode() for k in keys)
        self.header = str(self.config.get("header", "x-api-key"))
        self.strip = bool(self.config.get("strip", True))
        self.accepted = self.metrics.counter("accepted")
        self.rejected = self.metrics.counter("rejected")
        self.challenge = LocalReply(401, "missing or unknown API key\n",
                                    {"www-authenticate": f'ApiKey header="{self.header}"'})

    def on_request_head(self, stream):
        presented = stream.request_headers.get(self.header)
        if presented is None or not self.known(presented.encode("latin-1")):
            self.rejected.inc()
            return self.challenge
        if self.strip:
            stream.request_headers.remove(self.header)
        self.accepted.inc()
        return None

    def known(self, presented: bytes) -> bool:
        """Every key is compared (no early exit), each in constant time."""
        return sum(hmac.compare_digest(presented, key) for key in self.keys) > 0
