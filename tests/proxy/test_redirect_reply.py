"""The Location of a redirect route (Istio's HTTPRedirect, a gateway's httpsRedirect), as Envoy
builds it: each part given replaces the request's, and a change of scheme drops the old
scheme's default port from the request's host."""

from __future__ import annotations

import pytest

from pymesh.api import model
from pymesh.http.message import RequestHead
from pymesh.proxy.local_reply import redirect_reply


def head(authority: str, path: str = "/a?b=1", scheme: str = "http") -> RequestHead:
    request = RequestHead("GET", path, [], scheme=scheme)
    request.authority = authority
    return request


@pytest.mark.parametrize("redirect, request_head, location", [
    (model.HTTPRedirect(scheme="https"), head("a.com"), "https://a.com/a?b=1"),
    (model.HTTPRedirect(scheme="https"), head("a.com:80"), "https://a.com/a?b=1"),
    (model.HTTPRedirect(scheme="https"), head("a.com:8080"), "https://a.com:8080/a?b=1"),
    (model.HTTPRedirect(scheme="https"), head("[::1]:80"), "https://[::1]/a?b=1"),
    (model.HTTPRedirect(scheme="http"), head("a.com:443", scheme="https"), "http://a.com/a?b=1"),
    (model.HTTPRedirect(scheme="http"), head("a.com:80"), "http://a.com:80/a?b=1"),  # same scheme: kept
    (model.HTTPRedirect(scheme="https", port=8443), head("a.com:80"), "https://a.com:8443/a?b=1"),
    (model.HTTPRedirect(scheme="https", authority="b.com:80"), head("a.com"), "https://b.com:80/a?b=1"),
    (model.HTTPRedirect(uri="/new"), head("a.com:80"), "http://a.com:80/new?b=1"),
])
def test_location(redirect, request_head, location):
    reply = redirect_reply(redirect, request_head)
    assert dict(reply.headers)[b"location"] == location.encode()
