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
    (("--namespace", "payments"), str(TOKEN), "--namespace payments differs from the token's demo"),
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


def test_a_service_account_token_names_the_identity_and_needs_a_root(tmp_path, monkeypatch) -> None:
    """A projected token (a JWT, not pm1.) asks for the account its claims name, in --trust-domain,
    and is re-read from its file for each bootstrap (the kubelet rotates it)."""
    from sa_tokens import projected_token

    for name in ("PYMESH_NAMESPACE", "PYMESH_SERVICE_ACCOUNT", "PYMESH_CA_ROOT", "PYMESH_TRUST_DOMAIN"):
        monkeypatch.delenv(name, raising=False)
    import argparse
    sa_token = projected_token("bookinfo", "bookinfo-reviews")
    with pytest.raises(argparse.ArgumentTypeError, match="pins no mesh root: give --ca-root") as raised:
        options(tmp_path, token=sa_token)
    assert sa_token not in str(raised.value)
    root = tmp_path / "root.pem"
    root.write_text("x")
    control = options(tmp_path, "--ca-root", str(root), "--trust-domain", "example.org", token=sa_token).control
    assert (control.node.namespace, control.node.service_account) == ("bookinfo", "bookinfo-reviews")
    assert control.token.trust_domain == "example.org" and sa_token not in repr(control.token)
    assert control.token.bearer() == sa_token
    (tmp_path / "token").write_text("rotated.by.kubelet\n")
    assert control.token.bearer() == "rotated.by.kubelet"
    with pytest.raises(argparse.ArgumentTypeError, match="--namespace default differs from the token's bookinfo"):
        options(tmp_path, "--ca-root", str(root), "--namespace", "default", token=sa_token)
    with pytest.raises(argparse.ArgumentTypeError, match="names no ServiceAccount"):
        options(tmp_path, "--ca-root", str(root), token=projected_token("a", "b").split(".")[0] + ".e30.x")


def test_ca_root_needs_a_token_and_the_cli_exits_2(tmp_path) -> None:
    root = tmp_path / "root.pem"
    root.write_text("x")
    done = subprocess.run([sys.executable, "-m", "pymesh", "proxy", "--control", "127.0.0.1:1", "--ca-root", str(root)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "--ca-root verifies the control server" in done.stderr, done.stderr
