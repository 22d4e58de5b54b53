"""pymesh's Grafana dashboards are valid dashboard JSON and ask only for what pymesh exports
(tests/mesh/test_mesh_prometheus.py runs every query against a real Prometheus)."""

from __future__ import annotations

import json
import re

import pytest

from pymesh.control.dashboard import DASHBOARDS
from pymesh.control.metrics import ControlMetrics
from pymesh.telemetry.metrics import FAMILIES

FILES = sorted(DASHBOARDS.glob("*.json"))
METRIC = re.compile(r"\b((?:istio|pilot|pymesh|process|envoy)_\w+)")
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
BUILTINS = {"__rate_interval", "__interval", "__range"}


def exported() -> set[str]:
    """Every sample name the proxies' and the control server's /metrics can show."""
    names = set()
    for family in FAMILIES:
        names |= {family.name} | ({f"{family.name}_{s}" for s in ("bucket", "sum", "count")} if family.buckets else set())
    for line in ControlMetrics().render().decode().splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0))
    return names


def panels(dashboard: dict) -> list[dict]:
    return [inner for panel in dashboard["panels"] for inner in [panel, *panel.get("panels", [])]
            if inner["type"] != "row"]


def test_the_four_dashboards() -> None:
    assert [f.stem for f in FILES] == ["control-plane", "mesh", "service", "workload"]
    uids = [json.loads(f.read_text())["uid"] for f in FILES]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_grafana_dashboard_json(path) -> None:
    board = json.loads(path.read_text())
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["title"] and board["uid"] and "id" not in board  # importable anywhere: Grafana assigns the id
    variables = board["templating"]["list"]
    assert variables[0] == {**variables[0], "name": "datasource", "type": "datasource", "query": "prometheus"}
    names = {v["name"] for v in variables} | BUILTINS
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids)
    for panel in panels(board):
        where = f"{path.stem}: {panel['title']}"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24 and grid["h"] > 0, where
        refs = [t["refId"] for t in panel["targets"]]
        assert panel["targets"] and len(set(refs)) == len(refs), where
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], where
            used = {a or b for a, b in VARIABLE.findall(target["expr"])}
            assert used <= names, f"{where}: undefined {used - names}"
    for variable in variables[1:]:
        if variable["type"] == "query":
            used = {a or b for a, b in VARIABLE.findall(variable["query"]["query"])}
            earlier = {v["name"] for v in variables[:variables.index(variable)]}
            assert used <= earlier | BUILTINS, f"{variable['name']} uses {used - earlier} before it is defined"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_metric_asked_for_is_exported(path) -> None:
    board = json.loads(path.read_text())
    texts = [t["expr"] for p in panels(board) for t in p["targets"]]
    texts += [v["query"]["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    asked = {name for text in texts for name in METRIC.findall(text)}
    assert asked and asked <= exported(), f"not exported: {sorted(asked - exported())}"
