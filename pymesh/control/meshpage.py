"""The control server's mesh page (GET /mesh on the admin port) and the JSON behind it.

The HTML is rendered here with every value from YAML or a proxy escaped; the page's one inline
script draws the service graph from /mesh/graph.json as SVG, shows a service's compiled routes
(/mesh/routes.json?host=) and the recent traces (/mesh/traces.json, /mesh/trace.json?id=), and
inserts everything it fetches as text nodes, never as markup. The Content-Security-Policy allows
that one script (by its hash) and nothing from elsewhere: the page works offline and an injected
<script> would not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
from pathlib import Path

_HERE = Path(__file__).resolve().parent
SCRIPT = (_HERE / "meshpage.js").read_text(encoding="utf-8")
STYLE = (_HERE / "meshpage.css").read_text(encoding="utf-8")


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CSP = (f"default-src 'none'; script-src {_hash(SCRIPT)}; style-src {_hash(STYLE)}; connect-src 'self'; "
       "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def render(status: dict, services: list[tuple[str, str]]) -> bytes:
    """The page: `status` is the server's /status, `services` the (host, namespace) pairs."""
    e = _escape
    proxies = "".join(
        f"<tr><td>{e(p.get('id'))}</td><td>{e(p.get('namespace'))}</td><td>{e(', '.join(p.get('addresses') or []))}</td>"
        f"<td>{e(p.get('pushed_version') or '-')}</td><td>{e(p.get('acked_version') or '-')}</td>"
        f"<td class=\"state {e(p.get('state', ''))}\">{e(_state(p))}</td></tr>"
        for p in status.get("proxies", []))
    rejected = "".join(
        f"<li><code>{e(r['file'])}</code><ul>{''.join(f'<li>{e(err)}</li>' for err in r['errors'])}</ul></li>"
        for r in status.get("rejected", []))
    buttons = "".join(f"<li><button type=\"button\" class=\"service\" data-host=\"{e(host)}\">{e(host)}</button>"
                      f" <small>{e(ns)}</small></li>" for host, ns in services)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pymesh: mesh</title>
<meta name="viewport" content="width=device-width">
<style>{STYLE}</style></head>
<body>
<header><h1>pymesh mesh</h1><span>config version <b id="version">{e(status.get('version'))}</b>,
control channel {'mTLS' if status.get('mtls') else 'plaintext (--insecure)'}</span></header>
<section id="graph-section"><h2>Service graph</h2>
<p class="legend"><span class="mtls">&#9473;&#9473; mTLS</span> <span class="plain">&#9477;&#9477; plaintext</span>
<span class="unknown">&#9473;&#9473; not reported</span> &middot; edges: requests/s and 5xx share over the last scrapes, p99 latency
<span id="graph-note"></span></p>
<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="1060" height="360" role="img"
 aria-label="service graph"></svg></section>
<section id="routes-section"><h2>Services</h2><ul id="services">{buttons or '<li>none</li>'}</ul>
<div id="routes" aria-live="polite"><p>Click a service for its routes as compiled.</p></div></section>
<section><h2>Proxies</h2><table id="proxies"><thead><tr><th>name</th><th>namespace</th><th>address</th>
<th>pushed</th><th>acked</th><th>state</th></tr></thead><tbody>{proxies}</tbody></table></section>
<section><h2>Rejected files</h2><ul id="rejected">{rejected or '<li>none: every file loaded</li>'}</ul></section>
<section><h2>Recent traces</h2><p class="hint">Zipkin v2 JSON spans POSTed to <code>/api/v2/spans</code>.</p>
<ul id="traces"></ul><div id="trace"></div></section>
<script>{SCRIPT}</script>
</body></html>
"""
    return page.encode()


def _state(proxy: dict) -> str:
    state = proxy.get("state", "?")
    if state == "NACKED" and proxy.get("error"):
        state += f": {proxy['error']}"
    return state if proxy.get("connected", True) else state + " (disconnected)"


def _escape(value: object) -> str:
    return html.escape(str(value), quote=True)
