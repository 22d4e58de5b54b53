"""`pymesh analyze --kubernetes` against the STAND-IN API server (tests/kube/apiserver.py: no real
one can run here), through a kubeconfig as a user's: the cluster's custom resources listed per
kind (a kind whose CRD is not installed skipped and named), errors named `<kind> <ns>/<name>`
with their field paths, one namespace or all, files analyzed with the cluster, and the exit
codes (1 for errors, for a kind the user may not list, for an unreachable API server)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pymesh.kube.custom_resources import CUSTOM_RESOURCES

SERVED = {c.kind.name: c.versions[0] for c in CUSTOM_RESOURCES if c.group == "networking.istio.io"}


def virtual_service(name: str, namespace: str, **route) -> dict:
    """Istio's bookinfo reviews VirtualService (samples/bookinfo/networking/virtual-service-reviews-v3.yaml)."""
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v3"}}],
                                                      **route}]}}


def destination_rule(namespace: str) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": namespace},
            "spec": {"host": "reviews", "subsets": [{"name": "v3", "labels": {"version": "v3"}}]}}


def analyze(apiserver, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pymesh", "analyze", "--kubernetes", "--kubeconfig",
                           str(apiserver.kubeconfig), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def cluster(apiserver):
    """Istio's networking CRDs installed (not security's, telemetry's or the Gateway API's); a bad
    VirtualService in default, good resources in bookinfo."""
    for resource in SERVED.values():
        apiserver.serve(resource)
    apiserver.apply(virtual_service("reviews", "default", timeout="soon"))
    apiserver.apply(destination_rule("default"))
    apiserver.apply(virtual_service("reviews", "bookinfo"))
    apiserver.apply(destination_rule("bookinfo"))
    return apiserver


def test_errors_name_the_object_and_field(cluster) -> None:
    done = analyze(cluster)  # the default namespace, as istioctl analyze
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith("VirtualService default/reviews: spec.http[0].timeout: ") for line in lines), lines
    assert lines[-1].startswith("1 error in 1 object")
    assert "bookinfo" not in done.stdout
    assert "note: skipped, their CustomResourceDefinitions are not installed:" in done.stderr
    for crd in ("peerauthentications.security.istio.io", "httproutes.gateway.networking.k8s.io"):
        assert crd in done.stderr
    assert "virtualservices.networking.istio.io" not in done.stderr


def test_one_namespace_or_all(cluster) -> None:
    done = analyze(cluster, "-n", "bookinfo")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1].startswith("ok: 2 resources in 2 objects from the cluster"), done.stdout
    done = analyze(cluster, "--all-namespaces")
    assert done.returncode == 1 and "VirtualService default/reviews: spec.http[0].timeout" in done.stdout
    lists = [path for method, path in cluster.requests if method == "GET" and "virtualservices" in path]
    assert any(path.startswith("/apis/networking.istio.io/v1/virtualservices?") for path in lists), lists
    assert any(path.startswith("/apis/networking.istio.io/v1/namespaces/bookinfo/virtualservices?") for path in lists)


def test_files_are_analyzed_with_the_cluster(cluster, tmp_path) -> None:
    """A file's DestinationRule for a host the cluster's VirtualService routes to: both read."""
    change = tmp_path / "change.yaml"
    change.write_text("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: ratings\n"
                      "  namespace: bookinfo\nspec:\n  host: ratings\n  trafficPolicy:\n    tls:\n      mode: SOMETIMES\n")
    done = analyze(cluster, "-n", "bookinfo", str(change))
    assert done.returncode == 1
    assert f"{change}:10 spec.trafficPolicy.tls.mode" in done.stdout, done.stdout
    assert done.stdout.splitlines()[-1].startswith("1 error in 1 source")


def test_an_older_crd_version_is_listed(apiserver) -> None:
    """A cluster whose CRD serves only v1beta1 (Istio before 1.22) is still read."""
    older = next(c for c in CUSTOM_RESOURCES if c.kind.name == "VirtualService").versions[1]
    apiserver.serve(older)
    apiserver.apply({**virtual_service("reviews", "default", timeout="soon"), "apiVersion": older.api_version})
    done = analyze(apiserver)
    assert done.returncode == 1 and "VirtualService default/reviews: spec.http[0].timeout" in done.stdout, done.stdout


def test_a_kind_that_cannot_be_listed_fails_the_analysis(cluster) -> None:
    cluster.fail_next(403, "Forbidden")
    done = analyze(cluster)
    assert done.returncode == 1
    assert "error: cannot list ServiceEntry (/apis/networking.istio.io/v1/namespaces/default/serviceentries): 403" \
        in done.stdout, done.stdout


def test_unreachable_api_server_and_no_input(tmp_path, apiserver) -> None:
    from ports import free_port

    kubeconfig = tmp_path / "gone"
    text = apiserver.kubeconfig.read_text().replace(f":{apiserver.port}", f":{free_port()}")
    kubeconfig.write_text(text)
    done = subprocess.run([sys.executable, "-m", "pymesh", "analyze", "-k", "--kubeconfig", str(kubeconfig)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "error: cannot reach the API server at https://localhost:" in done.stdout, \
        done.stdout + done.stderr
    done = subprocess.run([sys.executable, "-m", "pymesh", "analyze"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "give a PATH, or --kubernetes" in done.stderr
