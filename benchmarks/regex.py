"""`python -m benchmarks regex`: what a route regex costs, on hostile values and on ordinary ones.

In one process, no proxy: the matcher pymesh compiles for a StringMatch regex (RE2, see
pymesh/routing/regex.py) against Python's `re` (what pymesh used before) on the same pattern and
value, and the route table's per-request match with and without a regex route.

- hostile: three patterns that backtrack catastrophically, against values of growing length.
  `re` is timed only up to the first length whose one match takes longer than the cap (each
  further character roughly doubles it); RE2 up to 64 KiB, to show its time is linear.
- ordinary: microseconds per call on route-like patterns and paths, as pymesh calls RE2, as the
  binding's public `fullmatch` would, and with `re`.
- route table: `CompiledRouteTable.match` per request for one route matching by exact, prefix or
  regex (regex matching, and regex turned away by its byte range).
"""

from __future__ import annotations

import datetime as dt
import re
import shlex
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Callable

from benchmarks import RESULTS_DIR, machine, report, results
from pymesh.api import model
from pymesh.api.regex import compile_regex
from pymesh.routing.match import CompiledRoute, CompiledRouteTable, VirtualHost
from pymesh.routing.regex import full_matcher
from pymesh.routing.snapshot import Route

# re_max_length bounds what `re` is given whatever the cap: past it, one match takes hours
FULL = {"re_cap_s": 1.0, "re_max_length": 30, "budget_s": 0.3, "rounds": 6,
        "lengths": (8, 12, 16, 18, 20, 22, 24, 26, 28, 30, 1024, 65536)}
SMOKE = {"re_cap_s": 0.02, "re_max_length": 16, "budget_s": 0.004, "rounds": 2, "lengths": (8, 12, 16, 1024)}

# (pattern, the hostile value of length n): each character roughly doubles `re`'s time
HOSTILE = [
    ("/a/(a+)+$", lambda n: "/a/" + "a" * (n - 4) + "!"),
    ("(x+x+)+y", lambda n: "x" * n),
    (r"/(\w+/?)*x", lambda n: "/" + "a" * (n - 1)),
]

API, ASSETS = r"/api/v[0-9]+/users/[a-z0-9-]+", r".*\.(css|js)"
ORDINARY = [  # (pattern, case, path)
    (API, "match", "/api/v2/users/abc-123"),
    (API, "no match, outside its byte range", "/static/app.js"),
    (API, "no match", "/api/v2/orders/17"),
    (ASSETS, "match", "/static/app/main.js"),
    (ASSETS, "no match", "/api/v2/users/abc-123"),
]


Timer = tuple[dict, str, Callable[[], object]]  # (row, key, fn): row[key] = microseconds per fn()


def per_call(fn, budget_s: float) -> float:
    """Mean seconds per call of `fn()` over about `budget_s` of calls (at least one)."""
    calls, start = 0, time.perf_counter()
    deadline = start + budget_s
    while True:
        batch = max(calls, 1)  # double the count each time, so reading the clock costs little
        for _ in range(batch):
            fn()
        calls += batch
        now = time.perf_counter()
        if now >= deadline:
            return (now - start) / calls


def measure(timers: list[Timer], sizes: dict) -> None:
    """Every timer in turn, `rounds` times, keeping each one's least mean: another program's
    burst on this shared machine then spoils one round of a case, not the case."""
    for _ in range(sizes["rounds"]):
        for row, key, fn in timers:
            us = per_call(fn, sizes["budget_s"] / sizes["rounds"]) * 1e6
            row[key] = min(row.get(key, us), us)


def hostile(sizes: dict) -> tuple[list[dict], list[Timer]]:
    rows, timers = [], []
    for pattern, value in HOSTILE:
        pymesh_test, python_test = full_matcher(pattern), re.compile(pattern).fullmatch
        re_done = False
        for n in sizes["lengths"]:
            text = value(n)
            assert not pymesh_test(text)
            row = {"pattern": pattern, "length": n}
            timers.append((row, "re2_us", lambda test=pymesh_test, text=text: test(text)))
            if not re_done and n <= sizes["re_max_length"]:  # once: it is seconds, not microseconds
                start = time.perf_counter()
                python_test(text)
                row["re_us"] = (time.perf_counter() - start) * 1e6
                re_done = row["re_us"] > sizes["re_cap_s"] * 1e6
            rows.append(row)
    return rows, timers


def ordinary() -> tuple[list[dict], list[Timer]]:
    rows, timers = [], []
    for pattern, case, path in ORDINARY:
        pymesh_test, python_test = full_matcher(pattern), re.compile(pattern).fullmatch
        public = compile_regex(pattern).fullmatch  # the same program, through the binding's API
        row = {"pattern": pattern, "case": case, "path": path}
        data = path.encode("latin-1")
        timers += [(row, "pymesh_re2_us", lambda f=pymesh_test, v=path: f(v)),
                   (row, "public_fullmatch_us", lambda f=public, v=data: f(v)),
                   (row, "re_us", lambda f=python_test, v=path: f(v))]
        rows.append(row)
    return rows, timers


class _Request:
    """The RequestView route matching reads."""

    method, authority, scheme, port = "GET", "svc", "http", 80
    headers: dict = {}
    source_labels: dict = {}
    source_ip = "127.0.0.1"

    def __init__(self, path: str) -> None:
        self.path = path


def route_table() -> tuple[list[dict], list[Timer]]:
    cases = [
        ("exact", model.StringMatch("exact", "/api/v2/users/abc-123"), "/api/v2/users/abc-123"),
        ("prefix", model.StringMatch("prefix", "/api/"), "/api/v2/users/abc-123"),
        ("regex, matching", model.StringMatch("regex", API), "/api/v2/users/abc-123"),
        ("regex, outside its byte range", model.StringMatch("regex", API), "/static/app.js"),
        ("regex, not matching", model.StringMatch("regex", API), "/api/v2/orders/17"),
    ]
    rows, timers = [], []
    for name, uri, path in cases:
        route = CompiledRoute.build(Route(name="r", virtual_service=""), (model.HTTPMatchRequest(uri=uri),), 80)
        table = CompiledRouteTable(80, [VirtualHost("h", ("svc",), (route,))])
        row = {"route": name, "path": path}
        timers.append((row, "us", lambda t=table, r=_Request(path): t.match(r)))
        rows.append(row)
    return rows, timers


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _pattern(pattern: str, markdown: bool) -> str:
    return "`" + pattern.replace("|", "\\|") + "`" if markdown else pattern


def print_tables(result: dict, markdown: bool = False) -> None:
    print("== Hostile values: one full match, microseconds (re: until one match passes the cap)")
    print(report.render_table(["pattern", "length", "RE2 (pymesh)", "Python re"],
                              [[_pattern(r["pattern"], markdown), str(r["length"]), _us(r["re2_us"]),
                                _us(r.get("re_us"))] for r in result["hostile"]], markdown))
    print("\n== Ordinary paths: microseconds per call")
    print(report.render_table(["pattern", "case", "RE2 as pymesh calls it", "RE2 public fullmatch", "Python re"],
                              [[_pattern(r["pattern"], markdown), r["case"], _us(r["pymesh_re2_us"]),
                                _us(r["public_fullmatch_us"]), _us(r["re_us"])] for r in result["ordinary"]], markdown))
    print("\n== Route table: CompiledRouteTable.match, one route, microseconds per request")
    print(report.render_table(["route", "path", "us"], [[r["route"], r["path"], _us(r["us"])] for r in result["table"]],
                              markdown))


def run(args) -> int:
    sizes = SMOKE if args.smoke else FULL
    started = dt.datetime.now(dt.timezone.utc)
    (bad, bad_timers), (usual, usual_timers), (table, table_timers) = hostile(sizes), ordinary(), route_table()
    measure(bad_timers + usual_timers + table_timers, sizes)
    result = {"schema": 1, "kind": "regex", "date": started.isoformat(timespec="seconds"),
              "command": shlex.join(["python", "-m", "benchmarks", *sys.argv[1:]]), "machine": machine.describe(),
              "settings": {**sizes, "google_re2": version("google-re2")},
              "hostile": bad, "ordinary": usual, "table": table}
    path = results.write(result, Path(args.out) if args.out else RESULTS_DIR, prefix="regex-")
    print_tables(result, args.markdown)
    print(f"result: {path}")
    return 0

