"""The control server's TokenReviewer: proves a proxy's projected ServiceAccount token through
the API server before the signing endpoint signs anything for it.

Fail closed: an API server that errs, or does not answer within `timeout`, refuses the request
(ReviewUnavailable, answered 503 so the proxy retries), never signs. At most `max_in_flight`
reviews run at once (a flood of bogus tokens must not become a flood on the API server); more
are refused at once. A positive answer is kept briefly (`cache_ttl`, never past the token's own
`exp`) under the token's SHA-256, in at most `cache_size` entries, so replicas restarting
together cost one review each; refusals are not kept. The token itself is never logged or kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from typing import Awaitable, Callable

from pymesh.kube import token_review
from pymesh.kube.resources import TOKEN_REVIEWS, ResourceType
from pymesh.kube.token_review import ReviewedAccount
from pymesh.security.jointoken import TokenRefused

# create(resource, body) -> the API server's answer (the created object), raising on any failure
Create = Callable[[ResourceType, dict], Awaitable[dict]]


class ReviewUnavailable(TokenRefused):
    """The API server could not be asked (unreachable, an error, too slow): refused for now."""


class TokenReviewer:
    def __init__(self, create: Create, audience: str = token_review.AUDIENCE, timeout: float = 5.0,
                 cache_ttl: float = 10.0, cache_size: int = 1024, max_in_flight: int = 32,
                 clock: Callable[[], float] = time.time):
        self._create = create
        self.audience = audience
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.max_in_flight = max_in_flight
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, ReviewedAccount]] = OrderedDict()  # sha256 -> (until, account)
        self._in_flight = 0

    async def review(self, token: str) -> ReviewedAccount:
        """The ServiceAccount `token` proves; TokenRefused (ReviewUnavailable when the API
        server could not tell) otherwise."""
        token_review.check_token_shape(token)
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None:
            if now < cached[0]:
                self._cache.move_to_end(key)
                return cached[1]
            del self._cache[key]
        account = token_review.judge(await self._ask(token), self.audience)
        self._keep(key, token, account)
        return account

    async def _ask(self, token: str) -> dict:
        if self._in_flight >= self.max_in_flight:
            raise ReviewUnavailable(f"TokenReview: {self.max_in_flight} reviews already in flight, try again")
        self._in_flight += 1
        try:
            return await asyncio.wait_for(self._create(TOKEN_REVIEWS, token_review.review_body(token, self.audience)),
                                          self.timeout)
        except asyncio.TimeoutError:
            raise ReviewUnavailable(f"TokenReview: the API server did not answer within {self.timeout:g} s") from None
        except Exception as exc:  # the client's own errors (HTTP status, connection, decoding) alike
            raise ReviewUnavailable(f"TokenReview: the API server could not be asked: {_reason(exc)}") from None
        finally:
            self._in_flight -= 1

    def _keep(self, key: str, token: str, account: ReviewedAccount) -> None:
        until = self._clock() + self.cache_ttl
        exp = token_review.expiry(token)
        if exp is not None:
            until = min(until, exp)
        if self.cache_size <= 0 or until <= self._clock():
            return
        self._cache[key] = (until, account)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)


def _reason(exc: Exception) -> str:
    """An exception as a short reason: its class and status/reason when it has them (an HTTP
    error's body may echo the request, so it is not quoted)."""
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", None)
    if status is not None:
        return f"{type(exc).__name__} {status}" + (f" {reason}" if isinstance(reason, str) and reason else "")
    text = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"{type(exc).__name__}" + (f": {text}" if text else "")
