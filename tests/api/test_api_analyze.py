"""`pymesh analyze`: every error on its own line, a summary, exit 1 on errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pymesh.cli import main

PYMESH = Path(sys.executable).with_name("pymesh")  # the console script of this environment


def test_three_mistakes_via_the_installed_command(data: Path) -> None:
    path = data / "three-mistakes.yaml"
    done = subprocess.run([str(PYMESH), "analyze", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        f"{path}:13 spec.http[0].retries.attempts: must be >= 0, got -2",
        f"{path}:16 spec.http[0].fault.abort.httpStatus: must be between 200 and 599, got 700",
        f"{path}:26 spec.trafficPolicy.loadBalancer.simple: load balancer 'FASTEST' is not valid "
        "(expected ROUND_ROBIN, LEAST_REQUEST, RANDOM or PASSTHROUGH)",
        "3 errors in 1 file",
    ]
    assert done.stderr == ""


def test_valid_configuration(data: Path, capsys) -> None:
    kinds = ["serviceentry", "workloadentry", "virtualservice", "destinationrule", "sidecar"]
    assert main(["analyze", *(str(data / f"{kind}.yaml") for kind in kinds), str(data / "tree")]) == 0
    lines = capsys.readouterr().out.splitlines()
    # rules after the catch-all: Istio's validation warns (VirtualServiceUnreachableRule)
    assert (f"{data / 'virtualservice.yaml'}:97 spec.http[4]: warning: virtualService rule \"faults\" "
                        "not used (route without matches defined before)") in lines
    # bookinfo's VirtualService is exported everywhere, its destinations only to bookinfo: a
    # sidecar in shop gets the route without them, which the compiler warns about
    assert (
        "warning: VirtualService bookinfo/reviews: destination outbound|9080|v2|reviews.bookinfo.svc.cluster.local: "
        "host reviews.bookinfo.svc.cluster.local is not a known service (seen by: sidecar in shop)") in lines
    assert all("warning: " in line for line in lines[:-1])
    assert lines[-1] == f"ok: 9 resources in 8 files, {len(lines) - 1} warnings"


def test_singular_summary(data: Path, capsys) -> None:
    assert main(["analyze", str(data / "tree" / "a.yml")]) == 0
    assert capsys.readouterr().out == "ok: 1 resource in 1 file\n"


def test_errors_in_several_files(data: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["analyze", str(data / "three-mistakes.yaml"), str(missing)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == [f"{missing}: no such file or directory", "4 errors in 2 files"]


def test_paths_are_required(capsys) -> None:
    try:
        main(["analyze"])
    except SystemExit as exit:
        assert exit.code == 2
    assert "PATH" in capsys.readouterr().err


MIXED = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: ef, namespace: istio-system}
spec: {configPatches: []}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: a, namespace: shop}
spec:
  hosts: [a.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: shop}
spec:
  hosts: [a.example.com]
  http:
  - match: [{statPrefix: a}]
    route: [{destination: {host: nowhere.example.com}}]
"""


def test_warnings_do_not_fail_and_strict_makes_unapplied_ones_errors(tmp_path: Path, capsys) -> None:
    """A real mesh's directory loads: kinds pymesh does not implement and Istio fields with no
    effect are named as not applied, the compiler's warnings are printed, the exit code is 0;
    --strict refuses what is not applied."""
    path = tmp_path / "mesh.yaml"
    path.write_text(MIXED)
    assert main(["analyze", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:2 kind: warning: EnvoyFilter istio-system/ef (networking.istio.io/v1alpha3) not applied: "
        "pymesh does not implement EnvoyFilter",
        f"{path}:7 kind: warning: Namespace shop (v1) not applied: pymesh does not implement Namespace",
        f"{path}:24 spec.http[0].match[0].statPrefix: warning: field has no effect in pymesh (ignored)",
        "warning: VirtualService shop/a: destination outbound|80||nowhere.example.com: host nowhere.example.com "
        "is not a known service (seen by: sidecar in shop)",
        "ok: 2 resources in 1 file, 4 warnings",
    ]
    assert main(["analyze", "--strict", str(path)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"{path}:2 kind: EnvoyFilter istio-system/ef (networking.istio.io/v1alpha3) not applied: "
        "pymesh does not implement EnvoyFilter",
        f"{path}:7 kind: Namespace shop (v1) not applied: pymesh does not implement Namespace",
        f"{path}:24 spec.http[0].match[0].statPrefix: field has no effect in pymesh (ignored)",
        "3 errors in 1 file",
    ]


def test_strict_is_a_load_option_of_every_command_that_loads() -> None:
    """The proxy, the gateway and the control server load with the same options as analyze (Limits)."""
    for command in (["proxy"], ["gateway"], ["control", "serve"], ["analyze"]):
        done = subprocess.run([str(PYMESH), *command, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "--strict" in done.stdout, (command, done.stdout[-500:])


def test_a_strict_proxy_refuses_a_kind_it_does_not_implement(tmp_path: Path) -> None:
    path = tmp_path / "ef.yaml"
    path.write_text(MIXED.split("---")[0])
    done = subprocess.run([str(PYMESH), "proxy", "--config", str(path), "--strict"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert (f"{path}:2 kind: EnvoyFilter istio-system/ef (networking.istio.io/v1alpha3) not applied: pymesh does "
            "not implement EnvoyFilter") in done.stderr


def test_routes_no_listener_uses_are_warned_about(tmp_path: Path, capsys) -> None:
    path = tmp_path / "db.yaml"
    path.write_text("""\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: db}
spec:
  hosts: [db.example.com]
  resolution: DNS
  ports: [{number: 5432, name: pg, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db}
spec:
  hosts: [db.example.com]
  http:
  - route: [{destination: {host: db.example.com}}]
    timeout: 5s
""")
    assert main(["analyze", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "warning: VirtualService default/db: its http routes have no effect: its hosts have no HTTP port (TCP) "
        "(seen by: mesh)",
        "ok: 2 resources in 1 file, 1 warning",
    ]


def test_the_istio_mesh_config_map_is_analyzed(tmp_path: Path) -> None:
    """Like the control server's store, analyze's proxy list read every resource's metadata,
    which the mesh config has not: "loading failed: AttributeError"."""
    (tmp_path / "mesh.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
        "data:\n  mesh: |\n    enableTracing: true\n")
    done = subprocess.run([str(PYMESH), "analyze", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "ok: 1 resource in 1 file\n", "")
