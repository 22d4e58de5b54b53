"""A VM's proxy options: --workload-group (or Istio's $ISTIO_META_AUTO_REGISTER_GROUP) goes into
the hello, needs --control and --address; $ISTIO_METAJSON_LABELS (a VM's cluster.env) gives the
labels when --labels does not; --concurrency left out is decided by ProxyConfig."""

from __future__ import annotations

import argparse

import pytest

from pymesh.cli import build_parser
from pymesh.proxy.command import options_from_args


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("ISTIO_META_AUTO_REGISTER_GROUP", "PYMESH_WORKLOAD_GROUP", "ISTIO_METAJSON_LABELS", "PYMESH_LABELS",
                 "PYMESH_ADDRESSES", "PYMESH_CONTROL"):
        monkeypatch.delenv(name, raising=False)


def options(*argv: str):
    return options_from_args(build_parser().parse_args(["proxy", *argv]))


def test_the_group_goes_into_the_hello():
    node = options("--control", "127.0.0.1:15010", "--address", "10.0.0.7", "--workload-group", "reviews").control.node
    assert (node.workload_group, node.addresses) == ("reviews", ("10.0.0.7",))


def test_istios_environment_names_the_group_and_labels(monkeypatch):
    monkeypatch.setenv("ISTIO_META_AUTO_REGISTER_GROUP", "freighter")
    monkeypatch.setenv("ISTIO_METAJSON_LABELS", '{"app":"freighter","service.istio.io/canonical-name":"freighter"}')
    opts = options("--control", "127.0.0.1:15010", "--address", "10.0.0.7")
    assert opts.control.node.workload_group == "freighter"
    assert dict(opts.identity.labels) == {"app": "freighter", "service.istio.io/canonical-name": "freighter"}
    assert dict(options("--control", "127.0.0.1:15010", "--address", "10.0.0.7",
                        "--labels", "app=own").identity.labels) == {"app": "own"}  # --labels wins


@pytest.mark.parametrize("argv, env, message", [
    (("--config", "x.yaml", "--workload-group", "g"), {}, "needs --control"),
    (("--control", "127.0.0.1:15010", "--workload-group", "g"), {}, "needs --address"),
    (("--config", "x.yaml"), {"ISTIO_METAJSON_LABELS": "{app"}, "is not JSON"),
    (("--config", "x.yaml"), {"ISTIO_METAJSON_LABELS": '{"replicas": 3}'}, "expected an object of strings"),
])
def test_refused(monkeypatch, argv, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        options(*argv)


def test_concurrency_left_out_is_none_and_zero_is_kept():
    assert options("--config", "x.yaml").concurrency is None
    assert options("--config", "x.yaml", "--concurrency", "0").concurrency == 0
    assert options("--config", "x.yaml", "--concurrency", "3").concurrency == 3
