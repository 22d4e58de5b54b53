"""`pymesh control token ...`: the admin port's /tokens API over HTTP, and its table."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request

from pymesh.control.status import Unreachable, admin_url

COLUMNS = ("ID", "NAMESPACE", "SERVICE ACCOUNT", "EXPIRES", "STATE")


def call(server: tuple[str, int], method: str, path: str, body: dict | None = None, timeout: float = 10.0) -> dict | None:
    """The API's JSON answer; None after printing why it failed."""
    url = admin_url(*server, path)
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        try:
            reason = json.load(exc).get("error", exc.reason)
        except ValueError:
            reason = exc.reason
        print(f"pymesh control token: {exc.code}: {reason}", file=sys.stderr)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"pymesh control token: {Unreachable.of(url, exc)}", file=sys.stderr)
    return None


def format_tokens(tokens: list[dict], now: float | None = None) -> str:
    now = time.time() if now is None else now
    rows = [COLUMNS] + [_row(t, now) for t in tokens]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _row(token: dict, now: float) -> tuple[str, ...]:
    if token.get("revoked") is not None:
        state = "revoked"
    elif token["expires"] <= now:
        state = "expired"
    else:
        state = "valid"
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(token["expires"]))
    return (token["id"], token["namespace"], token["service_account"], expires, state)
