"""Fetching the JWK Sets that RequestAuthentication's jwksUri names, off the request path.

Istio's istiod fetches each jwksUri and inlines the keys into the proxies' config (refreshing
every 20 minutes); pymesh's proxy fetches them itself, so a static-config proxy works too. One
`JwksCache` per worker holds an entry per URI: fetched when a snapshot first names it, refreshed
every REFRESH seconds (Envoy's remote_jwks default cache duration, 600 s), retried with backoff
after a failure while the last good keys stay in use. A token whose kid the keys do not have may
ask for one early refetch, at most every EARLY_REFETCH seconds per URI (a key rotated at the
issuer is picked up without waiting for the refresh; random kids cannot make the proxy hammer
the issuer). Until a first fetch succeeds the URI has no keys and its tokens are refused (Istio
fails closed the same way).

A rule with an issuer and no keys gets them as istiod does, by OpenID discovery: the issuer's
`/.well-known/openid-configuration` names the `jwks_uri`.

The fetch is a plain GET (urllib in the default executor, so no event-loop code blocks): HTTPS
verifies the server against the system's roots and its hostname, always; redirects are not
followed and proxies from the environment are not used; the body is bounded (MAX_BYTES) and the
whole fetch by the rule's timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from typing import Callable, Iterable

from pymesh.security.jwt import DISCOVERY, Jwks, JwksError, parse_jwks

log = logging.getLogger("pymesh.proxy.jwks")

REFRESH = 600.0  # seconds between fetches of a good set (Envoy's default cache duration)
EARLY_REFETCH = 5.0  # at most one early refetch per URI this often (unknown kid)
RETRY_FIRST, RETRY_MAX = 1.0, 60.0  # backoff after a failed fetch
MAX_BYTES = 256 * 1024  # a JWK Set larger than this is refused


class FetchError(Exception):
    pass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D102 (urllib's hook)
        return None  # urllib then raises HTTPError for the 3xx


def fetch(uri: str, timeout: float, limit: int = MAX_BYTES) -> bytes:
    """The body of GET `uri` (blocking; run it in an executor). FetchError on any failure."""
    if not uri.startswith(("http://", "https://")):  # urllib would also open file:, ftp:, data:
        raise FetchError("only http and https URIs are fetched")
    deadline = time.monotonic() + timeout
    opener = urllib.request.build_opener(
        _NoRedirect(), urllib.request.ProxyHandler({}),
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
    )
    request = urllib.request.Request(uri, headers={"Accept": "application/json", "User-Agent": "pymesh"})
    try:
        with opener.open(request, timeout=timeout) as response:
            if response.status != 200:
                raise FetchError(f"status {response.status}")
            body = bytearray()
            while len(body) <= limit:
                if time.monotonic() > deadline:
                    raise FetchError(f"took longer than {timeout:g}s")
                chunk = response.read(16384)
                if not chunk:
                    return bytes(body)
                body += chunk
            raise FetchError(f"larger than {limit} bytes")
    except FetchError:
        raise
    except urllib.error.HTTPError as exc:  # a 3xx (not followed) or an error status
        raise FetchError(f"status {exc.code}") from None
    except (OSError, ValueError) as exc:  # URLError, HTTPError, ssl errors, timeouts are OSErrors
        raise FetchError(str(getattr(exc, "reason", None) or exc)) from None


def fetch_keys(uri: str, timeout: float, fetch=fetch) -> bytes:
    """The JWK Set at `uri`; for an OpenID discovery document (a rule with an issuer but no keys:
    istiod's discovery), the set its `jwks_uri` names, within the same timeout."""
    if not uri.endswith(DISCOVERY):
        return fetch(uri, timeout)
    started = time.monotonic()
    try:
        jwks_uri = json.loads(fetch(uri, timeout)).get("jwks_uri")
    except (ValueError, AttributeError):
        raise FetchError("the discovery document is not a JSON object") from None
    if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("http://", "https://")):
        raise FetchError("the discovery document has no http(s) jwks_uri")
    return fetch(jwks_uri, max(0.001, timeout - (time.monotonic() - started)))


Fetch = Callable[[str, float], bytes]


class _Entry:
    """One jwksUri: its last good keys, the fetch in flight, and who waits for it."""

    def __init__(self, cache: JwksCache, uri: str, timeout: float) -> None:
        self.cache = cache
        self.uri = uri
        self.timeout = timeout
        self.keys: Jwks | None = None
        self.inflight: asyncio.Future | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.started = -EARLY_REFETCH  # when the latest fetch started (cache clock)
        self.failures = 0
        self.waiters: list[Callable[[], None]] = []
        self.closed = False

    def start(self) -> None:
        if self.inflight is not None or self.closed:
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        cache = self.cache
        self.started = cache.clock()
        self.inflight = cache.loop.run_in_executor(None, cache.fetch, self.uri, self.timeout)
        self.inflight.add_done_callback(self._done)

    def _done(self, future: asyncio.Future) -> None:
        self.inflight = None
        if self.closed:
            return
        try:
            self.keys = parse_jwks(future.result())
            self.failures = 0
            delay = self.cache.refresh
            self.cache.fetched += 1
        except (FetchError, JwksError) as exc:
            self.failures += 1
            delay = min(RETRY_MAX, RETRY_FIRST * 2 ** (self.failures - 1))
            self.cache.failed += 1
            kept = "keeping the last good keys" if self.keys is not None else "no keys yet: its tokens are refused"
            log.warning("jwks %s: fetch failed (%s); %s, retrying in %.0fs", self.uri, exc, kept, delay)
        self.timer = self.cache.loop.call_later(delay, self.start)
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter()

    def close(self) -> None:
        """No more fetches; requests waiting for one decide now (without keys: refused)."""
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter()


class JwksCache:
    """The keys of every jwksUri the current snapshot names (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fetch: Fetch = fetch_keys, clock=time.monotonic,
                 refresh: float = REFRESH, early_refetch: float = EARLY_REFETCH) -> None:
        self.loop = loop
        self.fetch = fetch
        self.clock = clock
        self.refresh = refresh
        self.early_refetch = early_refetch
        self.entries: dict[str, _Entry] = {}
        self.fetched = 0  # successful fetches (jwks_fetch_success)
        self.failed = 0  # failed fetches (jwks_fetch_failed)

    def retain(self, uris: Iterable[tuple[str, float]]) -> None:
        """Fetch the (uri, timeout) pairs not held yet; drop the entries no longer named."""
        wanted = dict(uris)
        for uri in list(self.entries):
            if uri not in wanted:
                self.entries.pop(uri).close()  # popped first: its waiters find no entry
        for uri, timeout in wanted.items():
            if uri not in self.entries:
                entry = self.entries[uri] = _Entry(self, uri, timeout)
                entry.start()

    def keys(self, uri: str) -> Jwks | None:
        entry = self.entries.get(uri)
        return entry.keys if entry is not None else None

    def wait(self, uri: str, callback: Callable[[], None], *, early: bool) -> bool:
        """Have `callback` called when a fetch of `uri` ends: the one in flight, or (`early`: for
        an unknown kid, or for a URI without keys) a new one if the rate limit allows it.
        False when there is nothing to wait for: the caller decides with the keys it has."""
        entry = self.entries.get(uri)
        if entry is None:
            return False
        if entry.inflight is None:
            if not early or self.clock() - entry.started < self.early_refetch:
                return False
            entry.start()
        entry.waiters.append(callback)
        return True

    def close(self) -> None:
        entries, self.entries = self.entries, {}
        for entry in entries.values():
            entry.close()
