"""`pymesh proxy --control ... --token-file`: the token gives the proxy its namespace and service
account; a contradicting flag, an unreadable or malformed token, and --ca-root without a token
are refused before anything starts (exit 2, a clear message, never the secret)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pymesh.cli import build_parser
from pymesh.proxy.command import options_from_args
from pymesh.security.jointoken import JoinToken

TOKEN = JoinToken("abc123", "demo", "reviews", "cluster.local", "sha256:" + "0" * 64, "the-secret-part")


def options(tmp_path, *extra: str, token: str | None = str(TOKEN)):
    path = tmp_path / "token"
    if token is not None:
        path.write_text(token + "\n")
    args = build_parser().parse_args(["proxy", "--control", "127.0.0.1:15010", "--token-file", str(path), *extra])
    return options_from_args(args)


def test_the_token_names_the_identity(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PYMESH_NAMESPACE", raising=False)
    monkeypatch.delenv("PYMESH_SERVICE_ACCOUNT", raising=False)
    control = options(tmp_path).control
    assert (control.node.namespace, control.node.service_account) == ("demo", "reviews")
    assert control.token == TOKEN
    assert options(tmp_path, "--namespace", "demo").control.token == TOKEN  # saying the same is fine


@pytest.mark.parametrize("extra, token, message", [
    (("--namespace", "payments"), str(TOKEN), "--namespace payments differs from the join token's demo"),
    (("--service-account", "admin"), str(TOKEN), "--service-account admin differs"),
    ((), "pm1.garbage", "join token: not a pymesh join token"),
    ((), None, "--token-file"),
])
def test_refused_before_start(tmp_path, monkeypatch, extra, token, message) -> None:
    monkeypatch.delenv("PYMESH_NAMESPACE", raising=False)
    monkeypatch.delenv("PYMESH_SERVICE_ACCOUNT", raising=False)
    import argparse
    with pytest.raises(argparse.ArgumentTypeError, match=message) as raised:
        options(tmp_path, *extra, token=token)
    assert TOKEN.secret not in str(raised.value)


def test_ca_root_needs_a_token_and_the_cli_exits_2(tmp_path) -> None:
    root = tmp_path / "root.pem"
    root.write_text("x")
    done = subprocess.run([sys.executable, "-m", "pymesh", "proxy", "--control", "127.0.0.1:1", "--ca-root", str(root)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--ca-root verifies the control server" in done.stderr, done.stderr
