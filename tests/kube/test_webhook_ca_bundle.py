"""The caBundle of the control server's own webhook configurations, patched through the API
server. Against the STAND-IN API server (tests/kube/apiserver.py: no real one can run here), with
the manifests' own webhook configurations applied to it: a real `pymesh control serve
--webhook-ca-bundle patch` fills caBundle with the CA its webhook certificate chains to (curl,
trusting only that bundle, then reaches the webhook by the Service's name, as the API server
would), and the patcher puts it back after a `kubectl apply` resets it, leaves other webhooks
and cert-manager's configurations alone, and survives a configuration that is not installed."""

from __future__ import annotations

import asyncio
import base64
import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from kube_async import client_for, run
from pymesh.control.kube.ca_bundle import CaBundlePatcher
from pymesh.kube import webhook_configs
from pymesh.kube.resources import MUTATING_WEBHOOK_CONFIGURATIONS, VALIDATING_WEBHOOK_CONFIGURATIONS
from waiting import wait_until
from webhook_harness import SERVICE, TIMEOUT, ControlServer

WEBHOOKS = Path(__file__).resolve().parents[2] / "kube" / "base" / "webhooks.yaml"
CONFIGS = {doc["kind"]: doc for doc in yaml.safe_load_all(WEBHOOKS.read_text())}
TYPES = {MUTATING_WEBHOOK_CONFIGURATIONS: webhook_configs.INJECTOR,
         VALIDATING_WEBHOOK_CONFIGURATIONS: webhook_configs.VALIDATOR}


def bundles(apiserver) -> list:
    return [entry["clientConfig"].get("caBundle") for resource, name in TYPES.items()
            for entry in (apiserver.get(resource, name) or {"webhooks": []})["webhooks"]]


def test_the_control_server_patches_its_webhook_configurations(apiserver, tmp_path, monkeypatch):
    for config in CONFIGS.values():
        apiserver.apply(config)
    monkeypatch.setenv("KUBECONFIG", str(apiserver.kubeconfig))
    (tmp_path / "config").mkdir()
    control = ControlServer(tmp_path / "config", tmp_path / "control.log", 5.0, tmp_path / "data",
                            "--webhook-listen", "127.0.0.1:0", "--webhook-ca-bundle", "patch", secure=True)
    try:
        control.start()
        patched = wait_until(lambda: all(bundles(apiserver)) and bundles(apiserver), TIMEOUT, what="caBundle patched")
        root = (tmp_path / "data" / "ca" / "root-cert.pem").read_bytes()
        entries = sum(len(config["webhooks"]) for config in CONFIGS.values())  # 8 injector + 1 validator entries
        assert set(patched) == {base64.b64encode(root).decode()} and len(patched) == entries == 9
        trusted = tmp_path / "bundle.pem"
        trusted.write_bytes(base64.b64decode(patched[0]))
        done = subprocess.run(["curl", "-sS", "--max-time", str(TIMEOUT), "--cacert", str(trusted), "--resolve",
                               f"{SERVICE}:{control.webhook_port}:127.0.0.1",
                               f"https://{SERVICE}:{control.webhook_port}/ready"], capture_output=True, timeout=30)
        assert done.stdout == b"ready\n", done.stderr
    finally:
        control.stop()
        print(control.log())


def test_a_reset_bundle_is_patched_again_and_others_are_left_alone(apiserver):
    mutating = copy.deepcopy(CONFIGS["MutatingWebhookConfiguration"])
    foreign = {"name": "other.example.com", "clientConfig": {"service": {"name": "other", "namespace": "x"}},
               "sideEffects": "None", "admissionReviewVersions": ["v1"]}
    mutating["webhooks"].append(foreign)
    apiserver.apply(mutating)
    bundle = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

    async def body():
        client = await client_for(apiserver)
        patcher = CaBundlePatcher(client, lambda: bundle, "pymesh-control", "pymesh-system", interval=0.05)
        task = asyncio.create_task(patcher.run())
        try:
            loop = asyncio.get_running_loop()
            for round_ in range(2):
                deadline = loop.time() + TIMEOUT
                while not all(bundles(apiserver)[:8]):
                    assert loop.time() < deadline, f"round {round_}: caBundle never patched"
                    await asyncio.sleep(0.02)
                config = apiserver.get(MUTATING_WEBHOOK_CONFIGURATIONS, webhook_configs.INJECTOR)
                assert "caBundle" not in config["webhooks"][-1]["clientConfig"]  # not ours: untouched
                if round_ == 0:
                    apiserver.apply(mutating)  # kubectl apply of the manifests: caBundle gone
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await client.close()

    run(body())
    patches = [path for method, path in apiserver.requests
               if method == "PATCH" and MUTATING_WEBHOOK_CONFIGURATIONS.plural in path]
    assert len(patches) >= 2  # (what the server saw: the patcher's own count may lag its last answer)
    assert set(bundles(apiserver)[:8]) == {base64.b64encode(bundle).decode()}


def test_cert_manager_configurations_and_missing_ones_are_not_patched(apiserver, caplog):
    validating = copy.deepcopy(CONFIGS["ValidatingWebhookConfiguration"])
    validating["metadata"]["annotations"] = {webhook_configs.CERT_MANAGER_INJECT: "pymesh-system/pymesh-webhook"}
    apiserver.apply(validating)  # and no MutatingWebhookConfiguration at all

    async def body():
        client = await client_for(apiserver)
        try:
            patcher = CaBundlePatcher(client, lambda: b"pem", "pymesh-control", "pymesh-system")
            await patcher.sync()
            await patcher.sync()
            return patcher.patched
        finally:
            await client.close()

    assert run(body()) == 0
    assert not any(bundles(apiserver))
    missing = [r for r in caplog.records if "is not installed" in r.getMessage()]
    assert len(missing) == 1  # said once, not every round


@pytest.mark.parametrize("config,expected", [
    ({"metadata": {"resourceVersion": "7"}, "webhooks": [{"clientConfig": {"service": {"name": "s", "namespace": "n"}}},
                                                         {"clientConfig": {"url": "https://x"}}]},
     [{"op": "test", "path": "/metadata/resourceVersion", "value": "7"},
      {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "cGVt"}]),
    ({"metadata": {}, "webhooks": [{"clientConfig": {"service": {"name": "s", "namespace": "n"}, "caBundle": "cGVt"}}]},
     []),
    ({"metadata": {"annotations": {webhook_configs.CERT_MANAGER_INJECT: "n/c"}},
      "webhooks": [{"clientConfig": {"service": {"name": "s", "namespace": "n"}}}]}, []),
    ({"metadata": {}}, []),
], ids=["ours only", "already equal", "cert-manager's", "no webhooks"])
def test_ca_bundle_patch(config, expected):
    assert webhook_configs.ca_bundle_patch(config, b"pem", "s", "n") == expected
