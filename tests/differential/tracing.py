"""Tracing what reached the upstreams and what the proxies logged back to the mutation that
caused it: by the token every target of a mutation carries (see corpus.py), else by the request
before it on the same upstream connection, else by the mutation its lane was sending when the bytes
arrived; access-log lines by the token in their path, else by the client's port.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from client import ClientView
from corpus import ROLE, Mutation, role_of
from recorder import Connection, Parsed
from session import ProxyRun

SHOW = 400  # bytes of a request or leftover shown in a report


@dataclass
class Outcome:
    """One proxy's handling of one mutation."""

    proxy: str
    view: ClientView
    routed: list[dict] = field(default_factory=list)  # access-log lines naming the mutation
    parsed: list[Parsed] = field(default_factory=list)  # requests the upstream parsed for it
    aborted: list[Parsed] = field(default_factory=list)  # heads whose body a close cut short
    leftovers: list[tuple[Connection, bytes]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def forwarded(self) -> list[tuple]:
        """What reached the upstream, comparable across proxies."""
        return sorted((role(p.target), p.method, p.target, p.body, p.switched) for p in self.parsed)

    def roles(self) -> Counter:
        return Counter(role(p.target) for p in self.parsed)

    def describe(self) -> str:
        lines = [f"  {self.proxy}: client saw {self.view.describe()}"]
        lines += [f"    log: {e.get('method')} {e.get('path')} -> {e.get('response_code')} "
                  f"bytes_received={e.get('bytes_received')} upstream={e.get('upstream_host')}"
                  f"{' ' + str(e['details']) if e.get('details') else ''}" for e in self.routed]
        lines += [f"    upstream parsed ({p.where}): {p.method.decode('latin-1')} {show(p.target)} "
                  f"body={show(p.body)}{' then 101 tunnel' if p.switched else ''}\n      head as received: {show(p.head)}"
                  for p in self.parsed]
        lines += [f"    upstream got the head, then a close mid-body ({p.where}): {p.method.decode('latin-1')} "
                  f"{show(p.target)} body so far={show(p.body)}" for p in self.aborted]
        lines += [f"    upstream leftover (conn {c.upstream}#{c.conn}): {show(b)}{' h11: ' + c.error if c.error else ''}"
                  for c, b in self.leftovers]
        lines += [f"    VIOLATION: {p}" for p in self.problems]
        return "\n".join(lines)


def show(data: bytes, limit: int = SHOW) -> str:
    text = repr(bytes(data[:limit]))
    return text + (f"... ({len(data)} bytes)" if len(data) > limit else "")


def role(target: bytes) -> str:
    named = role_of(target)
    return named[1] if named else "?"


def _token_of_bytes(data: bytes) -> str | None:
    match = ROLE.search(data)
    return match.group(1).decode() if match else None


def forwarded_entry(entry: dict) -> bool:
    return entry.get("upstream_host") not in (None, "", "-")


def attribute_upstream(run: ProxyRun, by_token: dict[str, Mutation], by_name: dict[str, Mutation],
                        outcomes: dict[str, Outcome]) -> list[str]:
    """Give each parsed or cut-short request to the mutation whose token its bytes carry (else the
    one its lane was sending), and each leftover to every mutation it concerns; returns what no
    mutation could be found for."""
    orphans = []

    def owner(data: bytes, conn: Connection, offset: int, fallback: Mutation | None = None) -> Mutation | None:
        token = _token_of_bytes(data)
        if token in by_token:
            return by_token[token]
        return fallback or by_name.get(conn.label_at(offset))

    for conn in run.connections:
        last = None
        for request in conn.requests:
            last = owner(bytes(conn.raw[request.start:request.end]), conn, request.start)
            if last is None:
                orphans.append(f"{run.name}: upstream parsed {show(request.method + b' ' + request.target)} "
                               f"on {request.where} that no mutation sent")
            else:
                outcomes[last.name].parsed.append(request)
        if conn.truncated is not None:
            found = owner(bytes(conn.raw[conn.truncated.start:]), conn, conn.truncated.start, last)
            if found is None:
                orphans.append(f"{run.name}: {conn.upstream}#{conn.conn} cut short {show(conn.leftover)}")
            else:
                outcomes[found.name].aborted.append(conn.truncated)
        elif conn.leftover:
            found = _owners(conn.leftover, conn, conn.parsed_end, last, by_token, by_name)
            if not found:
                orphans.append(f"{run.name}: {conn.upstream}#{conn.conn} left with {show(conn.leftover)}")
            for mutation in found:
                outcomes[mutation.name].leftovers.append((conn, conn.leftover))
    return orphans


def attribute_log(run: ProxyRun, by_token: dict[str, Mutation], outcomes: dict[str, Outcome]) -> None:
    """Give each access-log line to its mutation: by the token in its path, else by the client's
    and listener's ports (Envoy logs them, so its codec errors are traced too), else (a forwarded `OPTIONS *`) to
    the mutation whose upstream parsed that method and target on that upstream."""
    by_ports: dict[tuple[int, int], list[str]] = {}
    for name, view in run.views.items():
        by_ports.setdefault(view.ports, []).append(name)
    pool = []
    for entry in run.log:
        token = _token_of_bytes(logged_path(entry))
        ports = (int(entry.get("client_port") or 0), int(entry.get("listener_port") or 0))
        alike = by_ports.get(ports, [])  # a client port can come round again: then it names no one
        name = by_token[token].name if token in by_token else alike[0] if len(alike) == 1 else None
        if name is not None:
            outcomes[name].routed.append(entry)
        elif forwarded_entry(entry):
            pool.append(entry)
    for outcome in outcomes.values():
        for request in outcome.parsed:
            if role_of(request.target) is None:
                entry = next((e for e in pool if logged_path(e) == request.target and str(e["upstream_host"]).endswith(
                    f":{request.port}") and e.get("method") == request.method.decode("latin-1")), None)
                if entry is not None:
                    pool.remove(entry)
                    outcome.routed.append(entry)


def _owners(data: bytes, conn: Connection, offset: int, last: Mutation | None, by_token: dict[str, Mutation],
            by_name: dict[str, Mutation]) -> list[Mutation]:
    """Every mutation a leftover concerns: the one in flight when its first byte arrived (the
    culprit, usually), and each whose token is in it (a victim whose request it swallowed)."""
    found = [by_name.get(conn.label_at(offset))]
    found += [by_token.get(m.group(1).decode()) for m in ROLE.finditer(data)]
    found = list(dict.fromkeys(m for m in found if m is not None))
    return found or ([last] if last else [])


def logged_path(entry: dict) -> bytes:
    return str(entry.get("path") or "").encode("latin-1", "replace")
