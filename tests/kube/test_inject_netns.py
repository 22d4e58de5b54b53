"""An injected pod's containers run as the kubelet would run them, in a network-namespace pod of
the test bed (tests/netns.py): pymesh-init's exact command writes the capture rules, the app
runs as its own uid, the sidecar as 1337 with the injected arguments and the downward API's
environment. Then a "kubelet" in another namespace asks the rewritten probes on the pod's
address, port 15021.

No kubelet or control server runs here: the sidecar reads a static configuration (--config in
place of --control, and without the token and CA root it would get a certificate with) that
sets STRICT mTLS, so a plaintext probe that capture sent back into the proxy would be refused;
the probes pass only because the proxy reaches its app from 127.0.0.6, as Istio's agent does."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

import waiting  # tests/waiting.py

from pymesh.kube import app_probes
from pymesh.kube.inject import INIT_NAME, PROXY_NAME, inject_pod
from pymesh.kube.inject_settings import InjectSettings

APP_UID, PROXY_UID, APP_PORT = 1000, 1337, 8080
CONTROL_ONLY = ("--control", "--token-file", "--ca-root", "--data-dir")  # flags that need a control server
STRICT = [{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
           "metadata": {"name": "default", "namespace": "default"}, "spec": {"mtls": {"mode": "STRICT"}}}]


def the_pod() -> dict:
    app = {"name": "app", "image": "app:1", "ports": [{"name": "http", "containerPort": APP_PORT}],
           "livenessProbe": {"httpGet": {"path": "/", "port": "http"}},
           "readinessProbe": {"tcpSocket": {"port": APP_PORT}}}
    return {"metadata": {"name": "app-0", "namespace": "default", "labels": {"app": "app"}},
            "spec": {"serviceAccountName": "app", "containers": [app]}}


def sidecar_command(proxy: dict, config: Path, labels: Path) -> list[str]:
    args, out = list(proxy["args"]), []
    while args:
        arg = args.pop(0)
        if arg in CONTROL_ONLY:
            args.pop(0)
            continue
        out.append(str(labels) if arg == "/etc/pymesh/pod/labels" else arg)
    assert out[0] == "proxy"
    return ["proxy", "--config", str(config), *out[1:]]


def sidecar_env(proxy: dict, pod_ip: str) -> dict[str, str]:
    fields = {"metadata.name": "app-0", "metadata.namespace": "default", "spec.serviceAccountName": "app",
              "status.podIP": pod_ip}
    env = {}
    for item in proxy["env"]:
        value = fields[item["valueFrom"]["fieldRef"]["fieldPath"]] if "valueFrom" in item else item["value"]
        env[item["name"]] = value.replace("$(PYMESH_POD_NAME)", "app-0").replace("$(PYMESH_NAMESPACE)", "default")
    return env


def test_the_injected_pod_answers_the_kubelets_probes(testbed, tmp_path):
    bed = testbed("kubelet", "pod")
    pod, kubelet = bed["pod"], bed["kubelet"]
    injected = inject_pod(the_pod(), None, InjectSettings())
    containers = {c["name"]: c for c in injected["spec"]["initContainers"]}
    init, proxy = containers[INIT_NAME], containers[PROXY_NAME]

    pod.run(sys.executable, "-m", "pymesh", *init["args"])  # pymesh-init, as root with its capabilities
    assert "PYMESH_INBOUND" in pod.run("iptables-save", "-t", "nat").stdout

    pod.spawn(sys.executable, "-u", "-m", "http.server", APP_PORT, "--bind", "0.0.0.0", "--directory", tmp_path,
              uid=APP_UID).wait_for_line("Serving HTTP")
    config, labels = tmp_path / "mesh.yaml", tmp_path / "labels"
    config.write_text(yaml.safe_dump_all(STRICT))
    labels.write_text('app="app"\nsecurity.istio.io/tlsMode="istio"\n')
    sidecar = pod.spawn(sys.executable, "-u", "-m", "pymesh", *sidecar_command(proxy, config, labels),
                        uid=PROXY_UID, env={**os.environ, **sidecar_env(proxy, pod.ip)})

    def probe(path: str) -> str:
        done = kubelet.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                           f"http://{pod.ip}:15021{path}", check=False)
        return done.stdout

    live = injected["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"]
    ready = injected["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"]
    try:
        waiting.wait_until(lambda: probe(live) == "200", 20, 0.1, "the rewritten liveness probe to pass")
    except AssertionError as error:
        raise AssertionError(f"{error}; last answer {probe(live)!r}; the sidecar said:\n{sidecar.output()}") from None
    assert probe(ready) == "200"
    # what a prober without 127.0.0.6 would meet: the proxy's own plaintext call to the pod
    # address is captured inbound and refused by STRICT mTLS
    naive = pod.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                    f"http://{pod.ip}:{APP_PORT}/", uid=PROXY_UID, check=False)
    assert naive.stdout != "200"
    assert app_probes.PROBERS_ENV in sidecar_env(proxy, pod.ip)
