"""The mesh page's server-rendered HTML (pymesh.control.meshpage): every value from a proxy or a
file is escaped, and the Content-Security-Policy admits the page's own script and style only."""

from __future__ import annotations

import pytest

from pymesh.control import meshpage

HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(1)>', "' onmouseover='alert(1)", "</style><b>"]


@pytest.mark.parametrize("value", HOSTILE)
def test_values_from_proxies_and_files_are_escaped(value):
    status = {"version": value, "mtls": True,
              "proxies": [{"id": value, "namespace": value, "addresses": [value], "pushed_version": value,
                           "acked_version": value, "state": value, "error": value, "connected": False}],
              "rejected": [{"file": value, "errors": [value]}]}
    page = meshpage.render(status, [(value, value)]).decode()
    body = page.split("<body>", 1)[1].split("<script>", 1)[0]
    assert value not in body and "<img" not in body and "<b>" not in body
    assert body.count("&lt;") + body.count("&#x27;") >= 8


def test_the_policy_admits_exactly_the_pages_script_and_style():
    import base64
    import hashlib
    digest = base64.b64encode(hashlib.sha256(meshpage.SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in meshpage.CSP
    assert "unsafe-inline" not in meshpage.CSP and "default-src 'none'" in meshpage.CSP
    page = meshpage.render({"proxies": [], "rejected": []}, []).decode()
    assert f"<script>{meshpage.SCRIPT}</script>" in page and f"<style>{meshpage.STYLE}</style>" in page
