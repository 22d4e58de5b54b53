"""The injected containers' command lines are ones pymesh runs: pymesh-init's through a real
`pymesh iptables --dry-run` (the rules it would write, no privileges needed), the sidecar's
through `pymesh proxy`'s own parser with the environment the downward API gives it. So a flag
renamed on either side fails here, not in a cluster."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pymesh.cli import build_parser
from pymesh.kube.inject import INIT_NAME, PROXY_NAME, inject_pod
from pymesh.kube.inject_settings import InjectSettings

POD = {"metadata": {"name": "web-0", "namespace": "shop", "labels": {"app": "web"}, "annotations": {
    "traffic.sidecar.istio.io/excludeOutboundIPRanges": "169.254.169.254/32",
    "traffic.sidecar.istio.io/excludeInboundPorts": "8443",
    "traffic.sidecar.istio.io/excludeOutboundPorts": "5432",
    "proxy.istio.io/config": "concurrency: 2"}},
    "spec": {"serviceAccountName": "web", "containers": [{"name": "web", "image": "web:1"}]}}


def containers() -> tuple[dict, dict]:
    spec = inject_pod(POD, None, InjectSettings())["spec"]
    by_name = {c["name"]: c for c in spec["initContainers"]}
    return by_name[INIT_NAME], by_name[PROXY_NAME]


def test_the_init_container_runs_pymesh_iptables():
    init, _ = containers()
    assert init["command"] == ["pymesh"]
    done = subprocess.run([sys.executable, "-m", "pymesh", *init["args"], "--dry-run"], capture_output=True,
                          text=True, timeout=60, env={k: v for k, v in os.environ.items() if not k.startswith("PYMESH_")})
    assert done.returncode == 0, done.stderr
    rules = done.stdout
    assert "-j REDIRECT --to-ports 15001" in rules and "-j REDIRECT --to-ports 15006" in rules
    assert "169.254.169.254/32" in rules and "--dport 5432" in rules and "--dport 8443" in rules
    assert "--uid-owner 1337" in rules


def test_the_sidecar_arguments_parse_as_pymesh_proxy(monkeypatch, tmp_path):
    _, proxy = containers()
    values = {"metadata.name": "web-0", "metadata.namespace": "shop", "spec.serviceAccountName": "web",
              "status.podIP": "10.1.2.3"}
    for item in proxy["env"]:
        value = values[item["valueFrom"]["fieldRef"]["fieldPath"]] if "valueFrom" in item else item["value"]
        monkeypatch.setenv(item["name"], value.replace("$(PYMESH_POD_NAME)", "web-0").replace("$(PYMESH_NAMESPACE)", "shop"))
    args = build_parser().parse_args(proxy["args"])  # the proxy's parser reads the env for its defaults
    assert args.command == "proxy" and args.control == "pymesh-control.pymesh-system.svc:15010"
    assert (args.namespace, args.service_account, args.workload) == ("shop", "web", "web-0")
    assert args.address == ["10.1.2.3"] and args.node_id == "web-0.shop"
    assert args.capture and (args.outbound_capture_port, args.inbound_capture_port) == (15001, 15006)
    assert args.health_address == "0.0.0.0" and args.health_port == 15021
    assert args.labels_file == "/etc/pymesh/pod/labels" and args.token_file == "/var/run/secrets/tokens/pymesh-token"
    assert args.ca_root == "/var/run/secrets/pymesh/ca/root-cert.pem" and args.data_dir == "/var/lib/pymesh"
    assert args.concurrency == 2


@pytest.mark.parametrize("probe", ["startupProbe", "readinessProbe"])
def test_the_sidecar_probes_ask_the_health_port(probe):
    _, proxy = containers()
    assert proxy[probe]["httpGet"] == {"path": "/healthz/ready", "port": 15021}


def test_the_control_server_scrapes_the_pod_address(monkeypatch):
    """The stats port binds 0.0.0.0 in a pod: the hello names the pod's IP, which the control
    server accepts as one of the node's addresses (not a wildcard it could not reach)."""
    from pymesh.proxy.command import _stats_host

    args = build_parser().parse_args(["proxy", "--control", "c:1", "--stats-address", "0.0.0.0", "--address", "10.1.2.3"])
    assert _stats_host(args) == "10.1.2.3"
    args = build_parser().parse_args(["proxy", "--control", "c:1"])
    assert _stats_host(args) == "127.0.0.1"


def test_temporary_files_go_to_a_writable_volume_in_memory():
    """The proxy's root filesystem is read-only, and ssl loads the workload's key pair from a
    temporary file (pymesh/security/tls.py): Python's TMPDIR must be a writable emptyDir mount,
    in memory (it holds the private key for an instant)."""
    spec = inject_pod(POD, None, InjectSettings())["spec"]
    proxy = next(c for c in spec["initContainers"] if c["name"] == PROXY_NAME)
    assert proxy["securityContext"]["readOnlyRootFilesystem"] is True
    tmpdir = next(e["value"] for e in proxy["env"] if e["name"] == "TMPDIR")
    mount = next(m for m in proxy["volumeMounts"] if f"{tmpdir}/".startswith(f"{m['mountPath'].rstrip('/')}/"))
    assert not mount.get("readOnly")
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["emptyDir"].get("medium") == "Memory"
