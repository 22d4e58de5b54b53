"""Every PromQL query of a Grafana dashboard, its template variables substituted as Grafana would
with real values: a query variable (`query_result(...)` with its regex, the form Istio's
dashboards use) is asked of the real Prometheus, a custom variable takes each of its options, an "All" variable its
allValue. `$__rate_interval` and friends become fixed windows."""

from __future__ import annotations

import re
from typing import Callable, Iterator

MAX_ASSIGNMENTS = 64  # combinations of variable values tried per dashboard
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}
_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_QUERY_RESULT = re.compile(r"query_result\((.*)\)\s*\Z", re.S)

Query = Callable[[str], list[dict]]  # PromQL -> the instant vector's samples


def substitute(text: str, values: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        if name not in values:
            raise KeyError(f"${name} is not a variable of the dashboard")
        return values[name]
    return _VARIABLE.sub(one, text)


def targets(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(panel title, expr) of every target of every panel, rows' nested panels included."""
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                yield inner["title"], target["expr"]


def assignments(dashboard: dict, query: Query) -> list[dict[str, str]]:
    """The variable assignments to try, in the order Grafana resolves them (each may use the
    ones before it); at most MAX_ASSIGNMENTS."""
    partial: list[dict[str, str]] = [{}]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "datasource":
            continue
        grown = []
        for values in partial:
            grown += [{**values, variable["name"]: option} for option in options(variable, values, query)]
        partial = grown[:MAX_ASSIGNMENTS]
    return partial


def options(variable: dict, values: dict[str, str], query: Query) -> list[str]:
    if variable.get("includeAll"):
        return [variable.get("allValue") or ".*"]
    if variable["type"] == "custom":
        return [option["value"] for option in variable["options"]]
    assert variable["type"] == "query", variable
    return resolve(substitute(variable["query"]["query"], values), variable.get("regex", ""), query)


def resolve(definition: str, regex: str, query: Query) -> list[str]:
    """A query variable's values, as Grafana's Prometheus data source computes them."""
    match = _QUERY_RESULT.match(definition)
    assert match, f"unsupported variable query {definition!r}"
    found = [grafana_text(sample) for sample in query(match.group(1))]
    if regex:
        pattern = re.compile(regex.strip("/"))
        found = [m.group(1) if m.groups() else m.group(0) for m in map(pattern.match, found) if m]
    return sorted(set(found))


def grafana_text(sample: dict) -> str:
    """How Grafana shows a query_result sample to the variable's regex: name{labels} value time."""
    metric = dict(sample["metric"])
    name = metric.pop("__name__", "")
    labels = ", ".join(f'{key}="{value}"' for key, value in metric.items())
    moment, value = sample["value"]
    return f"{name}{{{labels}}} {value} {int(float(moment) * 1000)}"


def unanswered(dashboard: dict, query: Query, has_data: Callable[[list[dict]], bool]) -> list[str]:
    """The panel queries that returned no data under every assignment tried ("title: expr")."""
    tried = assignments(dashboard, query)
    missing = []
    for title, expr in targets(dashboard):
        if not any(has_data(query(substitute(expr, values))) for values in tried):
            missing.append(f"{title}: {expr}")
    return missing
