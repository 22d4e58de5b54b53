"""`python -m benchmarks control`: its generated mesh agrees with pymesh's own scoping, the
simulated proxies read the envelope the server writes, and `--smoke` runs end to end with a
result file of the documented shape. No figure is judged."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import controlgen, controlproxies, controlreport
from pymesh.api import model
from pymesh.api.load import load_paths
from pymesh.api.wire import Ack, Hello, Node, SnapshotMessage, encode_json, encode_message
from pymesh.routing.view import proxy_view

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("scoped", [False, True])
def test_mesh_is_valid_and_affected_matches_the_views(tmp_path, scoped):
    controlgen.write_mesh(tmp_path, scoped)
    loaded = load_paths(sorted(str(p) for p in tmp_path.glob("*.yaml")))
    assert not loaded.errors, loaded.errors[:3]
    config = loaded.config
    assert len(config.service_entries) == len(config.virtual_services) == controlgen.SERVICES
    changed = f"svc-{controlgen.CHANGED}"
    for i in range(0, 200, 7):  # proxies of every namespace, v1 and v2
        view = proxy_view(config, Node(**controlgen.node_fields(i)))
        sees = any(vs.metadata.name == changed for vs in view.virtual_services)
        assert sees == controlgen.affected(i, scoped), i


def test_changes_rewrite_only_the_weights(tmp_path):
    controlgen.write_mesh(tmp_path, False)
    path = controlgen.vs_path(tmp_path)
    before = load_paths([str(path)]).config.virtual_services[0]
    texts = [controlgen.change_text(step) for step in (1, 2, 3)]
    assert len(set(texts)) == 3
    after = load_paths([str(controlgen.prepare(path, texts[0]).rename(path))]).config.virtual_services[0]
    weights = lambda vs: [d.weight for r in vs.http for d in r.route]  # noqa: E731
    assert weights(before) != weights(after) and sum(weights(after)) == sum(weights(before))
    assert [r.name for r in after.http] == [r.name for r in before.http]


def test_node_fields_are_distinct_nodes():
    nodes = [Node(**controlgen.node_fields(i)) for i in range(2000)]
    assert len({n.id for n in nodes}) == len({n.addresses for n in nodes}) == 2000
    assert {n.namespace for n in nodes} == {f"ns-{k}" for k in range(5)}


def test_envelope_reads_what_the_server_encodes():
    config = model.MeshConfig()
    frame = encode_message(SnapshotMessage("17", "a1b2", config), {"config": encode_json(config)})
    assert controlproxies.envelope(frame[4:]) == ("snapshot", "17", "a1b2")
    ack = encode_message(Ack("17", "a1b2"))
    assert controlproxies.envelope(ack[4:]) == ("ack", "17", "a1b2")
    hello = encode_message(Hello(Node(id="x")))  # no version or nonce up front: the full decoder's answer
    assert controlproxies.envelope(hello[4:]) == ("hello", "", "")


def test_report_renders_a_result():
    summary = lambda v: {"median": v, "min": v, "max": v, "n": 1}  # noqa: E731
    cases = [{"name": f"control-{n}-all", "variant": "all", "proxies": n, "affected": n, "connect_s": n / 1000,
              "rss_mb_connected": 40 + n / 100, "rss_kb_per_proxy": 25.0, "rss_mb_peak": 60.0, "changes": [{}],
              "summary": {k: summary(n / 2) for k, *_ in controlreport.COLUMNS}} for n in (100, 1000)]
    text = controlreport.render({"cases": cases}, markdown=True)
    assert "| all | 1,000 | 1,000 |" in text
    assert "Target (convergence p99 < 1000 ms with 1000 proxies): met" in text
    assert "convergence p99: 1.00x, 10.00x" in text


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs taskset")
@pytest.mark.timeout(90)
def test_smoke_run(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks", "control", "--smoke", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=80)
    assert done.returncode == 0, done.stdout + done.stderr
    [path] = tmp_path.glob("control-*-smoke.json")
    result = json.loads(path.read_text())
    assert result["kind"] == "control" and result["settings"]["proxies"] == [100]
    assert [(c["variant"], c["proxies"]) for c in result["cases"]] == [("all", 100), ("scoped", 100)]
    for case in result["cases"]:
        assert case["connect_s"] > 0 and case["rss_mb_connected"] > 0
        assert len(case["changes"]) == 1
        change = case["changes"][0]
        assert change["pushed"] == change["affected"] == case["affected"]
        assert change["pushed_unaffected"] == 0 and change["content_ok"] and change["types"] == ["snapshot"]
        assert set(change["convergence_ms"]) == {"p50", "p99", "max"}
        assert change["server_generations"] == 1
        for key in ("convergence_p99_ms", "server_convergence_ms", "cpu_ms_per_push_all", "cpu_us_per_proxy_push"):
            assert case["summary"][key]["n"] == 1, key
    scoped = result["cases"][1]
    assert 0 < scoped["affected"] < scoped["proxies"]
    assert "conv p99 ms" in done.stdout
