"""The API server client (pymesh.control.kube.client) against the STAND-IN API server of
tests/kube/apiserver.py, over HTTPS with a throwaway CA and a bearer token from a kubeconfig, as
it would run against a real cluster."""

import json
import logging
import sys

import pytest

from kube_async import client_for, run
from pymesh.control.kube.client import JSON_PATCH, KubeApiError, KubeClient, default_kubeconfig
from pymesh.kube.resources import EVENTS, SERVICES, TOKEN_REVIEWS


def service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": "http", "port": 9080}]}}


def test_list_pages_follow_continue(apiserver):
    """Stand-in API server. list() gives one page and its continue token; list_all() follows
    the tokens to every item, under the first page's resourceVersion."""
    for i in range(5):
        apiserver.apply(service(f"s{i}"))

    async def body():
        client = await client_for(apiserver)
        try:
            page = await client.list(SERVICES, "default", limit=2)
            assert [i["metadata"]["name"] for i in page["items"]] == ["s0", "s1"]
            assert page["metadata"]["continue"] and page["metadata"]["remainingItemCount"] == 3
            everything = await client.list_all(SERVICES, limit=2)
            assert [i["metadata"]["name"] for i in everything["items"]] == [f"s{i}" for i in range(5)]
            assert everything["metadata"] == {"resourceVersion": page["metadata"]["resourceVersion"]}
        finally:
            await client.close()
    run(body())


def test_writes_and_errors(apiserver):
    """Stand-in API server. create, get, merge patch, JSON patch, the status subresource, delete;
    the server's Status errors come back as KubeApiError with code and reason."""
    async def body():
        client = await client_for(apiserver)
        try:
            created = await client.create(SERVICES, service("reviews"))
            assert created["metadata"]["uid"] and created["metadata"]["resourceVersion"]
            with pytest.raises(KubeApiError) as exists:
                await client.create(SERVICES, service("reviews"))
            assert (exists.value.status, exists.value.reason) == (409, "AlreadyExists")
            patched = await client.patch(SERVICES, "reviews", {"metadata": {"labels": {"app": "reviews"}}}, "default")
            assert patched["metadata"]["labels"] == {"app": "reviews"}
            patched = await client.patch(SERVICES, "reviews", [{"op": "replace", "path": "/spec/ports/0/port",
                                                               "value": 80}], "default", content_type=JSON_PATCH)
            assert patched["spec"]["ports"][0]["port"] == 80
            status = await client.patch(SERVICES, "reviews", {"status": {"conditions": [{"type": "Ready"}]},
                                                              "spec": {"ports": []}}, "default", subresource="status")
            assert status["status"] == {"conditions": [{"type": "Ready"}]} and status["spec"]["ports"][0]["port"] == 80
            event = await client.create(EVENTS, {"apiVersion": "events.k8s.io/v1", "kind": "Event",
                                                 "metadata": {"generateName": "reviews.", "namespace": "default"},
                                                 "reason": "Invalid", "note": "spec.hosts: required"})
            assert event["metadata"]["name"].startswith("reviews.")
            assert (await client.get(SERVICES, "reviews", "default"))["metadata"]["labels"] == {"app": "reviews"}
            await client.delete(SERVICES, "reviews", "default")
            with pytest.raises(KubeApiError) as missing:
                await client.get(SERVICES, "reviews", "default")
            assert (missing.value.status, missing.value.reason) == (404, "NotFound")
        finally:
            await client.close()
    run(body())


def test_token_review_goes_to_the_callback(apiserver):
    """Stand-in API server. post() sends a TokenReview; the stand-in's callback answers it."""
    apiserver.token_review = lambda spec: {"authenticated": spec.get("token") == "good",
                                           "user": {"username": "system:serviceaccount:default:reviews"},
                                           "audiences": spec.get("audiences", [])}

    async def body():
        client = await client_for(apiserver)
        try:
            review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "spec": {"token": "good", "audiences": ["pymesh-ca"]}}
            answer = await client.post(TOKEN_REVIEWS, review)
            assert answer["status"]["authenticated"] and answer["status"]["audiences"] == ["pymesh-ca"]
        finally:
            await client.close()
    run(body())


def test_watch_yields_raw_events_and_ends_with_the_server(apiserver):
    """Stand-in API server. watch() yields each line as the server sent it, and ends when the
    server ends the watch (timeoutSeconds)."""
    apiserver.apply(service("a"))

    async def body():
        client = await client_for(apiserver)
        try:
            listed = await client.list(SERVICES)
            apiserver.apply(service("b"))
            events = [e async for e in client.watch(SERVICES, listed["metadata"]["resourceVersion"], timeout_seconds=1)]
            assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "b"
            assert events[0]["object"]["kind"] == "Service"
            assert {e["type"] for e in events[1:]} <= {"BOOKMARK"}
        finally:
            await client.close()
    run(body())


def test_tls_is_verified_against_the_kubeconfig_ca(apiserver, tmp_path):
    """Stand-in API server. Without its CA in the kubeconfig the client refuses the server's
    certificate; with insecure-skip-tls-verify it connects but says so in the log."""
    config = json.loads(apiserver.kubeconfig.read_text())
    del config["clusters"][0]["cluster"]["certificate-authority"]
    unverified = tmp_path / "no-ca"
    unverified.write_text(json.dumps(config))
    config["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    skipping = tmp_path / "skip"
    skipping.write_text(json.dumps(config))

    async def body():
        client = await KubeClient.connect(unverified)
        try:
            with pytest.raises(Exception) as refused:
                await client.list(SERVICES)
            assert "certificate" in str(refused.value).lower()
        finally:
            await client.close()
        client = await KubeClient.connect(skipping)
        try:
            assert (await client.list(SERVICES))["kind"] == "ServiceList"
        finally:
            await client.close()
    run(body())


def test_skipping_verification_is_logged(apiserver, tmp_path, caplog):
    config = json.loads(apiserver.kubeconfig.read_text())
    config["clusters"][0]["cluster"] = {"server": apiserver.url, "insecure-skip-tls-verify": True}
    path = tmp_path / "skip"
    path.write_text(json.dumps(config))

    async def body():
        client = await KubeClient.connect(path)
        await client.close()
    with caplog.at_level(logging.WARNING, "pymesh.control.kube"):
        run(body())
    assert any("TLS verification" in r.getMessage() for r in caplog.records)


def test_wrong_token_is_unauthorized(apiserver, tmp_path):
    """Stand-in API server requiring its bearer token: another token gets 401 Unauthorized."""
    path = apiserver.write_kubeconfig(tmp_path / "wrong", token="not-the-token")

    async def body():
        client = await KubeClient.connect(path)
        try:
            with pytest.raises(KubeApiError) as denied:
                await client.list(SERVICES)
            assert denied.value.status == 401
        finally:
            await client.close()
    run(body())


def test_in_cluster_config(apiserver, tmp_path, monkeypatch):
    """Stand-in API server reached as a pod does: KUBERNETES_SERVICE_HOST/PORT and the service
    account's token and CA files (the library's in-cluster loader, pointed at test files)."""
    from kubernetes_asyncio.config import incluster_config

    token = tmp_path / "token"
    token.write_text(apiserver.token)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "localhost")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(apiserver.port))
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(apiserver.ca_path))
    apiserver.apply(service("a"))

    async def body():
        client = await KubeClient.connect()
        try:
            assert client.host == f"https://localhost:{apiserver.port}"
            assert [i["metadata"]["name"] for i in (await client.list(SERVICES))["items"]] == ["a"]
        finally:
            await client.close()
    run(body())


def test_default_kubeconfig(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path}/a:{tmp_path}/b")
    assert default_kubeconfig() == tmp_path / "a"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_kubeconfig() == tmp_path / ".kube" / "config"


def test_an_exec_plugin_token_is_fetched_again_after_a_401(apiserver, tmp_path):
    """Stand-in API server whose token changes (rotated): the kubeconfig's exec credential plugin
    (as EKS, GKE and kind-with-OIDC use) is run again after the 401 and the request succeeds."""
    token_file = tmp_path / "token"
    token_file.write_text(apiserver.token)
    plugin = tmp_path / "credential.py"
    plugin.write_text("import json, sys\n"
                      f"token = open({str(token_file)!r}).read()\n"
                      "json.dump({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',"
                      " 'status': {'token': token}}, sys.stdout)\n")
    config = json.loads(apiserver.kubeconfig.read_text())
    config["users"][0]["user"] = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                                           "args": [str(plugin)], "interactiveMode": "Never"}}
    path = tmp_path / "exec-kubeconfig"
    path.write_text(json.dumps(config))

    async def body():
        client = await KubeClient.connect(path)
        try:
            assert (await client.list(SERVICES))["kind"] == "ServiceList"
            apiserver.token = "rotated-token"
            token_file.write_text("rotated-token")
            assert (await client.list(SERVICES))["kind"] == "ServiceList"
            assert sum(1 for m, t in apiserver.requests if t.startswith("/api/v1/services")) == 3  # one 401 retried
        finally:
            await client.close()
    run(body())


def test_plain_http_kubeconfig(tmp_path):
    """Stand-in API server on plain HTTP (kubectl proxy's http://127.0.0.1:8001 shape): the same client."""
    from apiserver import StandInAPIServer

    with StandInAPIServer(tmp_path, tls=False, token=None) as plain:
        plain.apply(service("a"))

        async def body():
            client = await KubeClient.connect(plain.kubeconfig)
            try:
                assert client.host.startswith("http://127.0.0.1:")
                assert [i["metadata"]["name"] for i in (await client.list(SERVICES))["items"]] == ["a"]
            finally:
                await client.close()
        run(body())
