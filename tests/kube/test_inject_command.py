"""`pymesh kube-inject` / `pymesh kube-uninject` as a user runs them: files and stdin/stdout,
multi-document manifests in order, the flags, and all-or-nothing on bad input (an error and
nothing on stdout, never part of a manifest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

MANIFESTS = Path(__file__).parent / "manifests"
BOOKINFO = MANIFESTS / "bookinfo.yaml"


def pymesh(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pymesh", *args], input=stdin, capture_output=True, text=True,
                          timeout=60)


def docs(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_inject_then_uninject_through_stdin_and_files(tmp_path):
    injected = pymesh("kube-inject", "-f", str(BOOKINFO))
    assert injected.returncode == 0, injected.stderr
    out = docs(injected.stdout)
    assert [d["kind"] for d in out] == [d["kind"] for d in docs(BOOKINFO.read_text())]  # order and non-pods kept
    for doc in out:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    again = pymesh("kube-inject", "-f", "-", stdin=injected.stdout)
    assert again.returncode == 0 and again.stdout == injected.stdout  # twice = once, byte for byte
    target = tmp_path / "out.yaml"
    back = pymesh("kube-uninject", "-f", "-", "-o", str(target), stdin=injected.stdout)
    assert back.returncode == 0 and back.stdout == ""
    assert docs(target.read_text()) == docs(BOOKINFO.read_text())


def test_flags_and_settings_file(tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text("proxyImage: from-settings:1\nlogLevel: debug\n")
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("defaultConfig:\n  discoveryAddress: control.other.svc:15010\n")
    done = pymesh("kube-inject", "-f", str(BOOKINFO), "--settings", str(settings), "--init-image", "init:2",
                  "--meshConfigFile", str(mesh))
    assert done.returncode == 0, done.stderr
    spec = docs(done.stdout)[2]["spec"]["template"]["spec"]
    init, proxy = spec["initContainers"]
    assert (init["image"], proxy["image"]) == ("init:2", "from-settings:1")
    assert proxy["args"][proxy["args"].index("--control") + 1] == "control.other.svc:15010"
    assert proxy["args"][proxy["args"].index("--log-level") + 1] == "debug"
    done = pymesh("kube-inject", "-f", str(BOOKINFO), "--image", "flag:3", "--control", "ctl:1")
    proxy = docs(done.stdout)[2]["spec"]["template"]["spec"]["initContainers"][1]
    assert proxy["image"] == "flag:3" and proxy["args"][2] == "ctl:1"


def test_namespace_labels_apply_the_webhook_selection():
    unlabelled = pymesh("kube-inject", "-f", str(BOOKINFO), "--namespace-labels", "team=books")
    assert unlabelled.returncode == 0 and docs(unlabelled.stdout) == docs(BOOKINFO.read_text())
    enabled = pymesh("kube-inject", "-f", str(BOOKINFO), "--namespace-labels", "istio-injection=enabled")
    assert "pymesh-proxy" in enabled.stdout


HOSTILE = [
    ("kind: [unclosed\n", "not YAML"),
    ("just a string\n", "not a Kubernetes object"),
    ("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n",
     "document 1 (Deployment web): spec.template: missing template"),
    ("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\n"
     "spec:\n  containers: [{name: pymesh-proxy, image: x}]\n", "document 2 (Pod p): spec.containers"),
    ("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    "
     "traffic.sidecar.istio.io/excludeOutboundPorts: 'ssh'\nspec:\n  containers: [{name: a, image: a}]\n",
     "excludeOutboundPorts"),
    ("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}"
                                                   + f", *{chr(97 + i)}" * 8 + "]\n" for i in range(8)),
     "aliases"),  # a billion laughs
    ("[" * 5000 + "]" * 5000, "nesting"),
]


@pytest.mark.parametrize("text, message", HOSTILE, ids=[m for _, m in HOSTILE])
def test_hostile_input_is_an_error_with_nothing_written(text, message):
    done = pymesh("kube-inject", "-f", "-", stdin=text)
    assert done.returncode == 1 and done.stdout == ""
    assert message in done.stderr and "Traceback" not in done.stderr


def test_a_huge_manifest_is_refused_before_parsing():
    done = pymesh("kube-inject", "-f", "-", stdin="# " + "x" * (9 << 20) + "\n")
    assert done.returncode == 1 and done.stdout == "" and "over the 8 MiB limit" in done.stderr


def test_bad_options_exit_2(tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text("policy: maybe\n")
    done = pymesh("kube-inject", "-f", str(BOOKINFO), "--settings", str(settings))
    assert done.returncode == 2 and "policy" in done.stderr and done.stdout == ""
    done = pymesh("kube-inject", "-f", str(BOOKINFO), "--control", "no-port")
    assert done.returncode == 2 and "controlAddress" in done.stderr
    missing = pymesh("kube-inject", "-f", str(tmp_path / "nothing.yaml"))
    assert missing.returncode == 1 and "No such file" in missing.stderr
    unwritable = pymesh("kube-inject", "-f", str(BOOKINFO), "-o", str(tmp_path / "no" / "such" / "dir.yaml"))
    assert unwritable.returncode == 1 and "No such file" in unwritable.stderr and "Traceback" not in unwritable.stderr
