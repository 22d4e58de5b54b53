"""Judging the HTTP/2 differential run, per case and proxy:

- accounting: every request the upstream parsed is for a stream of the case, parsed once, and the
  client was told the stream may have been processed (the upstream's answer came back, a reset
  other than REFUSED_STREAM, or a GOAWAY whose last stream id covers it);
- refusal: a watched stream Envoy refuses (RST_STREAM, GOAWAY with an error, local 4xx) pymesh
  refuses too, its error code free;
- agreement: a stream both forward reaches the upstream with the same method, target and body.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass, field

from corpus import role_of
from h2_client import H2View
from h2_corpus import H2Case
from recorder import Connection

CATEGORIES = ("both refuse", "both accept identically", "both accept differently",
              "envoy-only refuse", "pymesh-only refuse", "other")

Request = tuple[str, bytes, bytes]  # method, target, body


@dataclass
class Side:
    view: H2View
    parsed: dict[str, list[Request]] = field(default_factory=dict)  # role -> what the upstream parsed
    problems: list[str] = field(default_factory=list)

    def check(self, case: H2Case) -> None:
        by_role = {role: sid for sid, role in case.streams.items()}
        for role, requests in self.parsed.items():
            sid = by_role.get(role)
            if sid is None:
                self.problems.append(f"the upstream parsed {requests} for no stream of the case (role {role})")
            elif len(requests) > 1:
                self.problems.append(f"the upstream parsed stream {sid} {len(requests)} times: {requests}")
            elif not self.view.accounts_for(sid):
                self.problems.append(f"the upstream parsed {requests[0]} (stream {sid}) but the client saw "
                                     f"{self.view.outcome(sid)}, which says it was not processed")


@dataclass
class H2Judgement:
    case: H2Case
    sides: dict[str, Side]
    category: str = ""
    allowed: str = ""

    def failures(self) -> list[str]:
        pymesh, envoy = self.sides["pymesh"], self.sides["envoy"]
        out = [f"pymesh: {p}" for p in pymesh.problems]
        for sid in self.case.watched:
            if envoy.view.refused(sid) and not pymesh.view.refused(sid) and not self.allowed:
                out.append(f"stream {sid}: Envoy refuses ({envoy.view.outcome(sid)}), pymesh does not "
                           f"({pymesh.view.outcome(sid)}); not in known_h2_differences.yaml")
            role = self.case.streams[sid]
            if pymesh.view.upstream_answered(sid) and envoy.view.upstream_answered(sid) \
                    and pymesh.parsed.get(role) != envoy.parsed.get(role):
                out.append(f"stream {sid}: the upstream got {pymesh.parsed.get(role)} from pymesh, "
                           f"{envoy.parsed.get(role)} from Envoy")
        return out

    def report(self) -> str:
        lines = [f"case {self.case.name} (token {self.case.token}): {self.category}",
                 f"  frames: {self.case.data.hex()}"]
        for name, side in self.sides.items():
            streams = ", ".join(f"{sid}={side.view.outcome(sid)}" for sid in self.case.streams)
            lines.append(f"  {name}: {streams}; goaway {side.view.goaway}; upstream parsed {side.parsed}")
            lines += [f"    problem: {p}" for p in side.problems]
        return "\n".join(lines)


def _category(case: H2Case, pymesh: H2View, envoy: H2View) -> str:
    refuse = {name: any(v.refused(s) for s in case.watched) for name, v in (("pymesh", pymesh), ("envoy", envoy))}
    accept = {name: all(v.upstream_answered(s) for s in case.watched) for name, v in (("pymesh", pymesh), ("envoy", envoy))}
    if refuse["pymesh"] and refuse["envoy"]:
        return "both refuse"
    if accept["pymesh"] and accept["envoy"]:
        return "both accept"
    if refuse["envoy"]:
        return "envoy-only refuse"
    return "pymesh-only refuse" if refuse["pymesh"] else "other"


def judge(cases: list[H2Case], views: dict[str, dict[str, H2View]], connections: dict[str, list[Connection]],
          allowed: list[dict]) -> tuple[dict[str, H2Judgement], list[str]]:
    """Every case's judgement, and upstream traffic no case accounts for (bytes that are no
    complete request, requests naming no case). A request whose body a close cut short (Envoy
    streams a head before it has checked the body's length) is discarded by any upstream."""
    by_token = {c.token: c for c in cases}
    judged = {c.name: H2Judgement(c, {name: Side(views[name][c.name]) for name in views}) for c in cases}
    stray = []
    for name, conns in connections.items():
        for conn in conns:
            for request in conn.requests:
                named = role_of(request.target)
                case = by_token.get(named[0]) if named else None
                if case is None:
                    stray.append(f"{name}: {conn.upstream}#{conn.conn} parsed {request.method!r} {request.target!r}")
                    continue
                judged[case.name].sides[name].parsed.setdefault(named[1], []).append(
                    (request.method.decode("latin-1"), request.target, request.body))
            if conn.leftover and conn.truncated is None:  # a body cut short by a close is discarded
                stray.append(f"{name}: {conn.upstream}#{conn.conn} (during {conn.label_at(conn.parsed_end)}) left "
                             f"{conn.leftover[:200]!r}")
    for j in judged.values():
        for side in j.sides.values():
            side.check(j.case)
        j.category = _category(j.case, j.sides["pymesh"].view, j.sides["envoy"].view)
        if j.category == "both accept":
            same = all(j.sides["pymesh"].parsed.get(r) == j.sides["envoy"].parsed.get(r) for r in j.case.streams.values())
            j.category = "both accept identically" if same else "both accept differently"
        j.allowed = next((e["reason"] for e in allowed if fnmatch.fnmatchcase(j.case.name, e["case"])), "")
    return judged, stray


def summary(judged: dict[str, H2Judgement]) -> list[str]:
    rows: dict[str, Counter] = {}
    for j in judged.values():
        rows.setdefault(j.case.category, Counter())[j.category] += 1
        rows[j.case.category]["pymesh violations"] += bool(j.sides["pymesh"].problems)
        rows[j.case.category]["envoy violations"] += bool(j.sides["envoy"].problems)
    columns = CATEGORIES + ("pymesh violations", "envoy violations")
    total = sum(rows.values(), Counter())
    lines = [f"h2 differential corpus: {len(judged)} frame sequences, each sent to pymesh and to Envoy",
             "category".ljust(12) + " | ".join(columns)]
    for name, row in sorted(rows.items()) + [("TOTAL", total)]:
        lines.append(name.ljust(12) + " | ".join(str(row[c]).rjust(len(c)) for c in columns))
    for j in judged.values():
        if j.category not in ("both refuse", "both accept identically") or j.allowed:
            codes = "; ".join(f"{n} {', '.join(s.view.outcome(sid) for sid in j.case.watched)}" for n, s in j.sides.items())
            lines.append(f"{j.category}{' (allowed)' if j.allowed else ''}: {j.case.name}: {codes}")
    return lines
