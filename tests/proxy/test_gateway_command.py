"""`pymesh gateway`'s options: `pymesh proxy`'s flags with a router's identity and Istio's ingress
gateway defaults, which flags and the environment still override."""

from __future__ import annotations

import pytest

from pymesh.cli import build_parser
from pymesh.proxy.gateway_command import options_from_args


def parse(*argv: str):
    return options_from_args(build_parser().parse_args(["gateway", *argv]))


@pytest.fixture(autouse=True)
def no_environment(monkeypatch):
    for name in ("PYMESH_LABELS", "PYMESH_NAMESPACE", "PYMESH_WORKLOAD", "PYMESH_CONTROL", "PYMESH_TOKEN",
                 "PYMESH_LISTEN_ADDRESS"):
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_istios_ingress_gateway():
    identity = parse("--config", "x.yaml").identity
    assert (identity.kind, identity.namespace, identity.workload) == ("router", "istio-system", "istio-ingressgateway")
    assert dict(identity.labels) == {"istio": "ingressgateway"}


def test_flags_override_them():
    identity = parse("--config", "x.yaml", "--labels", "istio=egressgateway", "--namespace", "edge",
                     "--workload", "istio-egressgateway").identity
    assert (identity.namespace, identity.workload, dict(identity.labels)) == (
        "edge", "istio-egressgateway", {"istio": "egressgateway"})


def test_the_environment_overrides_them(monkeypatch):
    monkeypatch.setenv("PYMESH_LABELS", "app=edge")
    monkeypatch.setenv("PYMESH_WORKLOAD", "edge-gw")
    identity = parse("--config", "x.yaml").identity
    assert (identity.workload, dict(identity.labels)) == ("edge-gw", {"app": "edge"})


def test_the_listen_address():
    assert parse("--config", "x.yaml").identity.listen_address == "0.0.0.0"  # Istio's
    assert parse("--config", "x.yaml", "--listen-address", "127.0.0.1").identity.listen_address == "127.0.0.1"


def test_the_hello_says_router():
    options = parse("--control", "127.0.0.1:15010")
    assert options.control.node.kind == "router"
    assert options.control.node.namespace == "istio-system"
