"""Judging a differential run: for each mutation and proxy, does what the upstream parsed agree with
what the proxy says it routed; and how do the two proxies' behaviours compare.

The invariant, per mutation and proxy: every request the upstream parsed is one the proxy's access
log says it routed, with the same method, target and body length; every request the log says was
routed upstream was parsed (or was cut short by a close while its body streamed, which an upstream
discards); an answer from the upstream is never logged for a request it did not parse; and no
upstream connection is left holding bytes that are no complete request. A proxy that refuses a
mutation satisfies it by sending nothing upstream.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from client import ClientView
from corpus import Mutation
from session import ProxyRun
from tracing import Outcome, attribute_log, attribute_upstream, forwarded_entry, logged_path, role, show

CATEGORIES = ("both refuse", "both forward identically", "both forward differently",
              "pymesh-only refuse", "envoy-only refuse")


@dataclass
class Judgement:
    mutation: Mutation
    outcomes: dict[str, Outcome]
    category: str
    allowed: str = ""  # the allow-list's reason, when Envoy refuses and pymesh forwards on purpose

    def failures(self) -> list[str]:
        out = [f"pymesh: {p}" for p in self.outcomes["pymesh"].problems]
        if self.category == "envoy-only refuse" and not self.allowed:
            extra = self.outcomes["pymesh"].roles() - self.outcomes["envoy"].roles()
            out.append(f"Envoy refuses what pymesh forwards ({', '.join(sorted(extra))}); "
                       "not in known_differences.yaml")
        return out

    def report(self) -> str:
        return "\n".join([f"mutation {self.mutation.name} (token {self.mutation.token}), {self.category}",
                          f"  request bytes: {show(self.mutation.data, 1200)}"]
                         + [o.describe() for o in self.outcomes.values()])


def _check(outcome: Outcome) -> None:
    """The invariant, as problems written for the engineer who has to fix them."""
    routed = [e for e in outcome.routed if forwarded_entry(e)]
    unmatched = list(outcome.parsed)
    cut_short = list(outcome.aborted)
    for entry in routed:
        path = logged_path(entry)
        match = next((p for p in unmatched if role(p.target) == role(path)), None)
        aborted = next((p for p in cut_short if role(p.target) == role(path)), None)
        if match is None and aborted is not None:  # streamed, then abandoned: the upstream discards it
            cut_short.remove(aborted)
            continue
        if match is None:
            status = int(entry.get("response_code") or 0)
            if 100 <= status < 400:  # else no answer, or a local reply after the proxy chose a host
                outcome.problems.append(f"the proxy answered {entry.get('method')} {entry.get('path')} with {status} "
                                        "as if from the upstream, which parsed no such request")
            continue
        unmatched.remove(match)
        method = match.method.decode("latin-1")
        if method != entry.get("method") or match.target != path:
            outcome.problems.append(f"the proxy logged {entry.get('method')} {entry.get('path')}, "
                                    f"the upstream parsed {method} {show(match.target)}")
        logged = int(entry.get("bytes_received") or 0)
        upgrade = any(k == b"upgrade" for k, _ in match.headers)
        if not match.switched and (logged < len(match.body) if upgrade else logged != len(match.body)):
            outcome.problems.append(f"the proxy logged {logged} body bytes for {entry.get('path')}, "
                                    f"the upstream parsed a body of {len(match.body)}: {show(match.body)}")
    for extra in unmatched:
        outcome.problems.append(f"the upstream parsed {extra.method.decode('latin-1')} {show(extra.target)} "
                                f"(body {len(extra.body)} bytes) that the proxy never routed")
    for extra in cut_short:
        outcome.problems.append(f"the upstream got the head of {extra.method.decode('latin-1')} {show(extra.target)} "
                                f"that the proxy never routed (then a close mid-body)")
    for conn, data in outcome.leftovers:
        outcome.problems.append(f"upstream connection {conn.upstream}#{conn.conn} was left with {len(data)} bytes "
                                f"that are no complete request: {show(data)}{' (h11: ' + conn.error + ')' if conn.error else ''}")


def _category(pymesh: Outcome, envoy: Outcome) -> str:
    if not pymesh.parsed and not envoy.parsed:
        return "both refuse"
    if pymesh.roles() - envoy.roles():
        return "envoy-only refuse"
    if envoy.roles() - pymesh.roles():
        return "pymesh-only refuse"
    return "both forward identically" if pymesh.forwarded() == envoy.forwarded() else "both forward differently"


def load_allowed(path: Path) -> list[dict]:
    entries = yaml.safe_load(path.read_text()) or []
    for entry in entries:
        assert set(entry) == {"mutation", "reason"} and entry["reason"].strip(), f"bad allow-list entry {entry}"
    return entries


def judge(mutations: list[Mutation], runs: dict[str, ProxyRun], allowed: list[dict]) -> tuple[dict[str, Judgement], list[str]]:
    """Every mutation's judgement, and the upstream traffic no mutation accounts for."""
    by_token = {m.token: m for m in mutations}
    by_name = {m.name: m for m in mutations}
    per_proxy: dict[str, dict[str, Outcome]] = {}
    orphans: list[str] = []
    for name, run in runs.items():
        outcomes = {m.name: Outcome(name, run.views.get(m.name, ClientView(error="not run"))) for m in mutations}
        orphans += attribute_upstream(run, by_token, by_name, outcomes)
        attribute_log(run, by_token, outcomes)
        for outcome in outcomes.values():
            _check(outcome)
        per_proxy[name] = outcomes
    judgements = {}
    for m in mutations:
        outcomes = {name: per_proxy[name][m.name] for name in runs}
        category = _category(outcomes["pymesh"], outcomes["envoy"])
        reason = next((e["reason"] for e in allowed if fnmatch.fnmatchcase(m.name, e["mutation"])), "")
        judgements[m.name] = Judgement(m, outcomes, category, reason if category == "envoy-only refuse" else "")
    return judgements, orphans


def summary(judgements: dict[str, Judgement], allowed: list[dict]) -> list[str]:
    """The per-category table the test session prints."""
    rows: dict[str, Counter] = {}
    for j in judgements.values():
        row = rows.setdefault(j.mutation.category, Counter())
        row[j.category] += 1
        row["pymesh violations"] += bool(j.outcomes["pymesh"].problems)
        row["envoy violations"] += bool(j.outcomes["envoy"].problems)
    columns = CATEGORIES + ("pymesh violations", "envoy violations")
    total = sum(rows.values(), Counter())
    width = max(len(c) for c in rows) + 2
    lines = [f"differential corpus: {len(judgements)} mutations, each sent to pymesh and to Envoy",
             "category".ljust(width) + " | ".join(columns)]
    for name, row in sorted(rows.items()) + [("TOTAL", total)]:
        lines.append(name.ljust(width) + " | ".join(str(row[c]).rjust(len(c)) for c in columns))
    lines += [f"both forward, differently: {j.mutation.name}" for j in judgements.values()
              if j.category == "both forward differently"]
    used = {e["mutation"] for e in allowed for j in judgements.values()
            if j.allowed and fnmatch.fnmatchcase(j.mutation.name, e["mutation"])}
    lines += [f"allow-list entry matches nothing Envoy refuses any more: {e['mutation']}"
              for e in allowed if e["mutation"] not in used]
    return lines
