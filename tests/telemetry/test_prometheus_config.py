"""The generated prometheus.yml and the control server's service discovery answer, table-driven
(the real Prometheus reads both in tests/telemetry/test_real_prometheus.py)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from pymesh.api.wire import Node
from pymesh.control.scrape_targets import http_sd
from pymesh.telemetry.prometheus_config import render, scrape_config


def jobs(config: dict) -> dict:
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_live_discovery_by_default() -> None:
    config = jobs(scrape_config())
    assert config["istiod"]["static_configs"] == [{"targets": ["127.0.0.1:15014"]}]
    proxies = config["envoy-stats"]
    assert proxies["metrics_path"] == "/stats/prometheus"
    assert proxies["http_sd_configs"][0]["url"] == "http://127.0.0.1:15014/prometheus/targets"
    assert "static_configs" not in proxies
    assert {"action": "labelmap", "regex": "__meta_pymesh_label_(.+)"} in proxies["relabel_configs"]


def test_static_targets_without_control_server() -> None:
    config = jobs(scrape_config(None, ["127.0.0.1:15090", "[::1]:15091"], "1s"))
    assert set(config) == {"envoy-stats"}
    assert config["envoy-stats"]["static_configs"] == [{"targets": ["127.0.0.1:15090", "[::1]:15091"]}]
    assert "http_sd_configs" not in config["envoy-stats"]


@pytest.mark.parametrize("options, error", [
    ({"control_admin": None}, "nothing to scrape"),
    ({"targets": ["localhost"]}, "--target 'localhost' is not host:port"),
    ({"targets": ["a b:80"]}, "--target 'a b:80' is not host:port"),
    ({"targets": ["host:0"]}, "--target 'host:0' is not host:port"),
    ({"targets": ["http://x:80"]}, "is not host:port"),
    ({"control_admin": "nope"}, "control server admin address 'nope' is not host:port"),
    ({"scrape_interval": "1 s"}, "scrape interval '1 s' is not a Prometheus duration"),
    ({"scrape_interval": ""}, "scrape interval '' is not a Prometheus duration"),
    ({"scrape_interval": "1m30s"}, None),
    ({"scrape_interval": "500ms"}, None),
])
def test_bad_options(options, error) -> None:
    if error is None:
        scrape_config(**options)
        return
    with pytest.raises(ValueError, match=error.replace("(", r"\(")):
        scrape_config(**options)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus) is not installed")
def test_promtool_accepts_it(tmp_path) -> None:
    path = tmp_path / "prometheus.yml"
    path.write_text(render(scrape_config(targets=["127.0.0.1:15090"], scrape_interval="1s")))
    done = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


NODE = Node(id="reviews-v1.demo", workload="reviews-v1", namespace="demo", service_account="reviews",
            labels={"app": "reviews", "version": "v1", "service.istio.io/canonical-name": "reviews"},
            addresses=("10.0.0.7",), stats_address="127.0.0.1:15211")


@pytest.mark.parametrize("node, targets", [
    (NODE, ["127.0.0.1:15211"]),
    (Node(id="a", stats_address=""), []),  # no stats port: not listed
    (Node(id="b", addresses=("10.0.0.8",), stats_address="0.0.0.0:15090"), ["10.0.0.8:15090"]),
    (Node(id="c", addresses=("fd00::8",), stats_address="[::]:15090"), ["[fd00::8]:15090"]),
    (Node(id="d", stats_address="0.0.0.0:15090"), []),  # a wildcard and no address: nowhere to scrape
])
def test_http_sd_targets(node, targets) -> None:
    assert [t for group in http_sd([node]) for t in group["targets"]] == targets


def test_http_sd_labels() -> None:
    [group] = http_sd([NODE])
    assert group["labels"] == {
        "__meta_pymesh_node_id": "reviews-v1.demo", "__meta_pymesh_namespace": "demo",
        "__meta_pymesh_workload": "reviews-v1", "__meta_pymesh_service_account": "reviews",
        "__meta_pymesh_kind": "sidecar", "__meta_pymesh_label_app": "reviews",
        "__meta_pymesh_label_service_istio_io_canonical_name": "reviews", "__meta_pymesh_label_version": "v1",
    }


def test_the_demo_gets_a_prometheus_command(tmp_path, monkeypatch) -> None:
    from pymesh.control import dashboard
    monkeypatch.setattr(dashboard.shutil, "which", lambda name: None)
    assert dashboard.prometheus_argv(tmp_path) is None  # not installed: the demo says so and goes on
    monkeypatch.setattr(dashboard.shutil, "which", lambda name: f"/usr/bin/{name}")
    argv = dashboard.prometheus_argv(tmp_path, "127.0.0.1:15014", "127.0.0.1:9091")
    assert argv == ["/usr/bin/prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'prometheus-data'}", "--web.listen-address=127.0.0.1:9091"]
    assert "http://127.0.0.1:15014/prometheus/targets" in (tmp_path / "prometheus.yml").read_text()


def test_the_command(tmp_path, capsys) -> None:
    from pymesh.cli import main
    path = tmp_path / "prometheus.yml"
    assert main(["dashboard", "prometheus-config", "--control", "none", "--target", "127.0.0.1:15090",
                 "--scrape-interval", "1s", "-o", str(path)]) == 0
    written = path.read_text()
    assert "job_name: envoy-stats" in written and "job_name: istiod" not in written and "scrape_interval: 1s" in written
    assert main(["dashboard", "prometheus-config"]) == 0
    assert "http://127.0.0.1:15014/prometheus/targets" in capsys.readouterr().out
    assert main(["dashboard", "prometheus-config", "--target", "nope"]) == 2
    assert "--target 'nope' is not host:port" in capsys.readouterr().err
