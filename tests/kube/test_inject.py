"""The injector (pymesh/kube/inject.py, uninject.py): Istio's bookinfo manifest injected validates
against the Kubernetes 1.30 schemas (kubernetes-validate), every pod gets pymesh-init and the
native sidecar, twice is once, uninject(inject(x)) == x; Istio's decision table and annotations
table-driven; the probe rewriting and its inverse."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from pymesh.kube import app_probes
from pymesh.kube.inject import INIT_NAME, PROXY_NAME, STATUS, inject_object, inject_pod, injection_required
from pymesh.kube.selection import webhook_selects
from pymesh.kube.inject_settings import InjectError, InjectSettings, load_settings
from pymesh.kube.uninject import uninject_object, uninject_pod

MANIFESTS = Path(__file__).parent / "manifests"
K8S_VERSION = "1.30.0"
SETTINGS = InjectSettings()


def documents(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((MANIFESTS / name).read_text()) if doc]


def validate(obj: dict) -> None:
    """Against the real schemas, strictly (an unknown field is an error, as `kubectl --validate=strict`)."""
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def pod_of(obj: dict) -> dict:
    if obj["kind"] == "Pod":
        return obj
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    return obj["spec"]["template"]


def container(spec: dict, name: str, key: str = "initContainers") -> dict:
    return next(c for c in spec.get(key, []) if c["name"] == name)


def env(proxy: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in proxy["env"]}


def pod(annotations: dict | None = None, labels: dict | None = None, containers: list | None = None, **spec) -> dict:
    metadata = {"name": "app", "namespace": "default", "labels": labels or {"app": "app"}}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"containers": containers or [{"name": "app", "image": "app:1"}], **spec}}


# --- bookinfo ------------------------------------------------------------------------------------


def test_bookinfo_injected_validates_and_every_pod_has_the_sidecar():
    original = documents("bookinfo.yaml")
    injected = [inject_object(doc, SETTINGS) for doc in original]
    deployments = 0
    for before, after in zip(original, injected):
        validate(after)
        if after["kind"] != "Deployment":
            assert after == before  # Services and ServiceAccounts pass through
            continue
        deployments += 1
        spec = pod_of(after)["spec"]
        assert [c["name"] for c in spec["initContainers"]] == [INIT_NAME, PROXY_NAME]
        assert [c["name"] for c in spec["containers"]] == [c["name"] for c in pod_of(before)["spec"]["containers"]]
        proxy = container(spec, PROXY_NAME)
        assert proxy["restartPolicy"] == "Always"  # native sidecar
        assert proxy["startupProbe"]["httpGet"] == {"path": "/healthz/ready", "port": 15021}
        assert env(proxy)["PYMESH_WORKLOAD"] == after["metadata"]["name"]
        assert json.loads(pod_of(after)["metadata"]["annotations"][STATUS])["initContainers"] == [INIT_NAME, PROXY_NAME]
    assert deployments == 6


def test_bookinfo_twice_is_once_and_uninject_is_the_inverse():
    original = documents("bookinfo.yaml")
    once = [inject_object(doc, SETTINGS) for doc in original]
    assert [inject_object(doc, SETTINGS) for doc in once] == once
    assert [uninject_object(doc) for doc in once] == original
    assert [inject_object(doc, SETTINGS) for doc in original] == once  # and the input was not changed


def test_the_proxy_and_init_containers_security():
    spec = pod_of(inject_object(documents("bookinfo.yaml")[2], SETTINGS))["spec"]
    init, proxy = container(spec, INIT_NAME), container(spec, PROXY_NAME)
    assert init["securityContext"]["capabilities"] == {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}
    assert init["securityContext"]["allowPrivilegeEscalation"] is False
    assert init["args"][0] == "iptables" and "restartPolicy" not in init
    context = proxy["securityContext"]
    assert context["runAsUser"] == context["runAsGroup"] == 1337
    assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"]
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
    args = proxy["args"]
    assert args[:4] == ["proxy", "--control", SETTINGS.control_address, "--capture"]
    assert args[args.index("--token-file") + 1] == "/var/run/secrets/tokens/pymesh-token"
    token = next(v for v in spec["volumes"] if v["name"] == "pymesh-token")
    assert token["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "pymesh-ca"
    assert {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in proxy["env"] if "valueFrom" in e} == {
        "PYMESH_POD_NAME": "metadata.name", "PYMESH_NAMESPACE": "metadata.namespace",
        "PYMESH_SERVICE_ACCOUNT": "spec.serviceAccountName", "PYMESH_ADDRESSES": "status.podIP"}
    podinfo = next(v for v in spec["volumes"] if v["name"] == "pymesh-podinfo")
    assert {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}} in podinfo["downwardAPI"]["items"]
    assert args[args.index("--labels-file") + 1] == "/etc/pymesh/pod/labels"


# --- Jobs ----------------------------------------------------------------------------------------

JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default"},
       "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never", "containers": [
           {"name": "pi", "image": "perl:5.34", "command": ["perl", "-Mbignum=bpi", "-wle", "print bpi(200)"]}]}}}}
CRONJOB = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "hello"},
           "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": {
               "restartPolicy": "OnFailure", "containers": [{"name": "hello", "image": "busybox:1.28",
                                                             "command": ["date"]}]}}}}}}


@pytest.mark.parametrize("obj", [JOB, CRONJOB], ids=["Job", "CronJob"])
def test_jobs_get_a_native_sidecar_so_they_finish(obj):
    """No kubelet runs here, so the Job cannot actually be run: this checks the structure that
    makes a Job's pod finish with a sidecar. The kubelet ends a pod's `restartPolicy: Always`
    init containers (native sidecars, Kubernetes 1.29+) once its regular containers have
    exited, and they never count towards the pod's completion; a sidecar among `containers`
    would keep the pod running for ever (istio/istio#11130)."""
    injected = inject_object(obj, SETTINGS)
    validate(injected)
    spec = pod_of(injected)["spec"]
    assert [c["name"] for c in spec["containers"]] == [c["name"] for c in pod_of(obj)["spec"]["containers"]]
    assert container(spec, PROXY_NAME)["restartPolicy"] == "Always"
    assert "restartPolicy" not in container(spec, INIT_NAME)  # an ordinary init container: runs to completion first
    assert spec["restartPolicy"] == pod_of(obj)["spec"]["restartPolicy"]
    assert uninject_object(injected) == obj


def test_lists_and_every_workload_kind():
    kinds = [("apps/v1", "StatefulSet"), ("apps/v1", "DaemonSet"), ("apps/v1", "ReplicaSet"), ("v1", "ReplicationController")]
    template = {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "a", "image": "a"}]}}
    items = [{"apiVersion": api, "kind": kind, "metadata": {"name": kind.lower()},
              "spec": {"selector": {"app": "a"} if kind == "ReplicationController" else {"matchLabels": {"app": "a"}},
                       "template": copy.deepcopy(template), **({"serviceName": "a"} if kind == "StatefulSet" else {})}}
             for api, kind in kinds]
    listed = {"apiVersion": "v1", "kind": "List", "items": items + [pod()]}
    injected = inject_object(listed, SETTINGS)
    for item in injected["items"]:  # the schemas have no List: each item
        validate(item)
        assert [c["name"] for c in pod_of(item)["spec"]["initContainers"]] == [INIT_NAME, PROXY_NAME], item["kind"]
    assert uninject_object(injected) == listed


# --- which pods: Istio's injectRequired and the default webhook selectors -------------------------


@pytest.mark.parametrize("labels, annotations, spec, policy, expected", [
    ({}, {}, {}, "enabled", True),
    ({}, {}, {}, "disabled", False),
    ({}, {"sidecar.istio.io/inject": "false"}, {}, "enabled", False),
    ({}, {"sidecar.istio.io/inject": "true"}, {}, "disabled", True),
    ({}, {"sidecar.istio.io/inject": "yes"}, {}, "disabled", True),  # Istio's YAML 1.1 booleans
    ({}, {"sidecar.istio.io/inject": "nonsense"}, {}, "enabled", False),  # an opinion, not true: no
    ({"sidecar.istio.io/inject": "true"}, {"sidecar.istio.io/inject": "false"}, {}, "enabled", True),  # label wins
    ({"sidecar.istio.io/inject": "false"}, {}, {}, "enabled", False),
    ({"sidecar.pymesh.dev/inject": "false"}, {}, {}, "enabled", False),
    ({"sidecar.pymesh.dev/inject": "true", "sidecar.istio.io/inject": "false"}, {}, {}, "enabled", True),
    ({}, {"sidecar.pymesh.dev/inject": "false"}, {}, "enabled", False),
    ({}, {"sidecar.istio.io/inject": "true"}, {"hostNetwork": True}, "enabled", False),  # never host network
])
def test_injection_required_by_the_pod(labels, annotations, spec, policy, expected):
    subject = pod(annotations, {"app": "x", **labels}, **spec)
    assert injection_required(subject, None, InjectSettings(policy=policy)) is expected


@pytest.mark.parametrize("namespace", ["kube-system", "kube-public", "kube-node-lease", "local-path-storage"])
def test_system_namespaces_are_never_injected(namespace):
    subject = pod({"sidecar.istio.io/inject": "true"})
    subject["metadata"]["namespace"] = namespace
    assert not injection_required(subject, None, SETTINGS)


@pytest.mark.parametrize("ns_labels, pod_labels, revision, expected", [
    ({"istio-injection": "enabled"}, {}, "", True),
    ({"pymesh-injection": "enabled"}, {}, "", True),
    ({"istio-injection": "disabled"}, {}, "", False),
    ({"istio-injection": "disabled"}, {"sidecar.istio.io/inject": "true"}, "", False),  # namespace says no
    ({"pymesh-injection": "disabled", "istio-injection": "enabled"}, {}, "", False),  # pymesh's name wins
    ({"istio-injection": "enabled"}, {"sidecar.istio.io/inject": "false"}, "", False),
    ({}, {}, "", False),  # an unlabelled namespace: no webhook is called
    ({}, {"sidecar.istio.io/inject": "true"}, "", True),  # object selector
    ({}, {"istio.io/rev": "default"}, "", True),
    ({"istio.io/rev": "default"}, {}, "", True),
    ({"istio.io/rev": "canary"}, {}, "", False),
    ({"istio.io/rev": "canary"}, {}, "canary", True),
    ({"pymesh.dev/rev": "canary"}, {}, "canary", True),
    ({"istio-injection": "enabled"}, {}, "canary", False),  # a named revision answers only for itself
    ({}, {"istio.io/rev": "canary"}, "canary", True),
    ({}, {"sidecar.istio.io/inject": "true"}, "canary", False),
    ({"istio.io/rev": "canary", "istio-injection": "enabled"}, {}, "canary", False),  # istio-injection wins there
])
def test_injection_required_by_the_namespace(ns_labels, pod_labels, revision, expected):
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bookinfo", "labels": ns_labels}}
    subject = pod(labels={"app": "x", **pod_labels})
    settings = InjectSettings(revision=revision)
    assert webhook_selects(subject["metadata"]["labels"], ns_labels, settings) is expected
    assert injection_required(subject, namespace, settings) is expected


def test_never_and_always_selectors():
    settings = InjectSettings(policy="disabled", always_inject_selector=({"app": "x"},),
                              never_inject_selector=({"tier": "db"},))
    assert injection_required(pod(labels={"app": "x"}), None, settings)
    assert not injection_required(pod(labels={"app": "x", "tier": "db"}), None, settings)  # never first
    assert not injection_required(pod(labels={"app": "y"}), None, settings)


def test_manifests_skip_pods_that_opt_out():
    deployment = documents("bookinfo.yaml")[2]
    pod_of(deployment)["metadata"]["annotations"] = {"sidecar.istio.io/inject": "false"}
    assert inject_object(deployment, SETTINGS) == deployment


# --- annotations ---------------------------------------------------------------------------------


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


@pytest.mark.parametrize("annotation, value, flag_name", [
    ("traffic.sidecar.istio.io/includeOutboundIPRanges", "10.0.0.0/8,172.16.0.0/12", "-i"),
    ("traffic.sidecar.istio.io/includeOutboundIPRanges", "", "-i"),
    ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "169.254.169.254/32", "-x"),
    ("traffic.sidecar.istio.io/includeInboundPorts", "8080,9090", "-b"),
    ("traffic.sidecar.istio.io/includeInboundPorts", "", "-b"),
    ("traffic.sidecar.istio.io/excludeInboundPorts", "8443", "-d"),
    ("traffic.sidecar.istio.io/includeOutboundPorts", "5432", "-q"),
    ("traffic.sidecar.istio.io/excludeOutboundPorts", "3306,6379", "-o"),
])
def test_capture_annotations_reach_pymesh_iptables(annotation, value, flag_name):
    injected = inject_pod(pod({annotation: value}), None, SETTINGS)
    validate(injected)
    assert flag(container(injected["spec"], INIT_NAME)["args"], flag_name) == value
    assert uninject_pod(injected) == pod({annotation: value})


def test_capture_defaults_come_from_the_settings():
    settings = InjectSettings(exclude_outbound_ip_ranges="169.254.169.254/32", include_inbound_ports="9080")
    args = container(inject_pod(pod(), None, settings)["spec"], INIT_NAME)["args"]
    assert flag(args, "-x") == "169.254.169.254/32" and flag(args, "-b") == "9080" and flag(args, "-i") == "*"
    assert "-o" not in args  # nothing to exclude: not said


def test_capture_ports_reach_both_containers():
    spec = inject_pod(pod(), None, InjectSettings(outbound_capture_port=16001, inbound_capture_port=16006))["spec"]
    init, proxy = container(spec, INIT_NAME)["args"], container(spec, PROXY_NAME)["args"]
    assert (flag(init, "-p"), flag(init, "-z")) == ("16001", "16006")
    assert (flag(proxy, "--outbound-capture-port"), flag(proxy, "--inbound-capture-port")) == ("16001", "16006")
    with pytest.raises(InjectError, match="inboundCapturePort"):
        load_settings("inboundCapturePort: 0")


@pytest.mark.parametrize("annotations, where, expected", [
    ({"sidecar.istio.io/proxyCPU": "250m"}, ("requests", "cpu"), "250m"),
    ({"sidecar.istio.io/proxyMemory": "256Mi"}, ("requests", "memory"), "256Mi"),
    ({"sidecar.istio.io/proxyCPULimit": "1"}, ("limits", "cpu"), "1"),
    ({"sidecar.istio.io/proxyMemoryLimit": "2Gi"}, ("limits", "memory"), "2Gi"),
    ({}, ("requests", "cpu"), "100m"),
])
def test_resource_annotations(annotations, where, expected):
    injected = inject_pod(pod(annotations), None, SETTINGS)
    validate(injected)
    assert container(injected["spec"], PROXY_NAME)["resources"][where[0]][where[1]] == expected
    assert container(injected["spec"], INIT_NAME)["resources"]["requests"] == {"cpu": "10m", "memory": "10Mi"}


def test_proxy_config_annotation():
    config = ("concurrency: 2\nterminationDrainDuration: 30s\nholdApplicationUntilProxyStarts: true\n"
              "discoveryAddress: control.mesh.svc:15012\nproxyMetadata:\n  FOO: bar\n")
    injected = inject_pod(pod({"proxy.istio.io/config": config}), None, SETTINGS)
    validate(injected)
    proxy = container(injected["spec"], PROXY_NAME)
    assert flag(proxy["args"], "--concurrency") == "2"
    assert flag(proxy["args"], "--drain-timeout") == "30"
    assert flag(proxy["args"], "--control") == "control.mesh.svc:15012"
    assert env(proxy)["FOO"] == "bar"


def test_proxy_metadata_wins_over_the_injected_env():
    injected = inject_pod(pod({"proxy.istio.io/config": "proxyMetadata: {PYMESH_WORKLOAD: custom}"}), None, SETTINGS)
    names = [e["name"] for e in container(injected["spec"], PROXY_NAME)["env"]]
    assert names.count("PYMESH_WORKLOAD") == 1 and env(container(injected["spec"], PROXY_NAME))["PYMESH_WORKLOAD"] == "custom"


def test_interception_mode_none_has_no_capture():
    injected = inject_pod(pod({"sidecar.istio.io/interceptionMode": "NONE"}), None, SETTINGS)
    validate(injected)
    assert [c["name"] for c in injected["spec"]["initContainers"]] == [PROXY_NAME]
    assert "--capture" not in container(injected["spec"], PROXY_NAME)["args"]
    assert uninject_pod(injected) == pod({"sidecar.istio.io/interceptionMode": "NONE"})


def test_readiness_annotations():
    injected = inject_pod(pod({"readiness.status.sidecar.istio.io/initialDelaySeconds": "2",
                               "readiness.status.sidecar.istio.io/periodSeconds": "5",
                               "readiness.status.sidecar.istio.io/failureThreshold": "10"}), None, SETTINGS)
    validate(injected)
    probe = container(injected["spec"], PROXY_NAME)["readinessProbe"]
    assert (probe["initialDelaySeconds"], probe["periodSeconds"], probe["failureThreshold"]) == (2, 5, 10)


def test_json_proxy_config_and_other_annotations():
    injected = inject_pod(pod({"proxy.istio.io/config": '{"holdApplicationUntilProxyStarts": true}',
                               "sidecar.istio.io/proxyImage": "registry.local/pymesh:dev",
                               "sidecar.istio.io/logLevel": "debug"}), None, SETTINGS)
    proxy = container(injected["spec"], PROXY_NAME)
    assert proxy["image"] == "registry.local/pymesh:dev" and flag(proxy["args"], "--log-level") == "debug"


@pytest.mark.parametrize("annotations, where", [
    ({"traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/33"}, "includeOutboundIPRanges"),
    ({"traffic.sidecar.istio.io/excludeOutboundIPRanges": "*"}, "excludeOutboundIPRanges"),
    ({"traffic.sidecar.istio.io/excludeOutboundPorts": "70000"}, "excludeOutboundPorts"),
    ({"traffic.sidecar.istio.io/includeInboundPorts": "15021"}, "[traffic.sidecar.istio.io/includeInboundPorts]"),
    ({"traffic.sidecar.istio.io/includeInboundPorts": "15006"}, "includeInboundPorts]: port 15006"),  # capture port
    ({"traffic.sidecar.istio.io/excludeOutboundIPRanges": "fd00::/8"}, "excludeOutboundIPRanges]: fd00::/8 is IPv6"),
    ({"sidecar.istio.io/proxyCPU": "lots"}, "proxyCPU"),
    ({"sidecar.istio.io/rewriteAppHTTPProbers": "maybe"}, "rewriteAppHTTPProbers"),
    ({"sidecar.istio.io/logLevel": "chatty"}, "logLevel"),
    ({"sidecar.istio.io/interceptionMode": "TPROXY"}, "interceptionMode"),
    ({"proxy.istio.io/config": "concurrency: -1"}, "concurrency"),
    ({"readiness.status.sidecar.istio.io/periodSeconds": "0"}, "periodSeconds"),
    ({"readiness.status.sidecar.istio.io/initialDelaySeconds": "-1"}, "initialDelaySeconds"),
    ({"proxy.istio.io/config": "bogusField: 1"}, "bogusField"),
    ({"proxy.istio.io/config": "[1, 2"}, "proxy.istio.io/config"),
    ({"proxy.istio.io/config": "terminationDrainDuration: soon"}, "terminationDrainDuration"),
])
def test_bad_annotations_are_refused_naming_them(annotations, where):
    subject = pod(annotations)
    with pytest.raises(InjectError) as error:
        inject_pod(subject, None, SETTINGS)
    assert where in str(error.value)


# --- hostile and odd pods ------------------------------------------------------------------------


@pytest.mark.parametrize("where, name", [("containers", PROXY_NAME), ("initContainers", INIT_NAME),
                                         ("initContainers", PROXY_NAME)])
def test_a_pod_already_carrying_our_container_name_is_refused(where, name):
    subject = pod()
    subject["spec"].setdefault(where, []).append({"name": name, "image": "impostor"})
    with pytest.raises(InjectError, match="already named"):
        inject_pod(subject, None, SETTINGS)


def test_a_volume_named_like_ours_is_refused():
    subject = pod(volumes=[{"name": "pymesh-token", "emptyDir": {}}])
    with pytest.raises(InjectError, match="pymesh-token"):
        inject_pod(subject, None, SETTINGS)


def test_host_network_pods_come_back_unchanged():
    subject = pod(hostNetwork=True)
    assert inject_pod(subject, None, SETTINGS) == subject


@pytest.mark.parametrize("obj", [
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"template": {"spec": {}}}},
    {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "x"}, "spec": {"jobTemplate": {}}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {"containers": "app"}},
])
def test_workloads_without_a_pod_template_are_refused(obj):
    with pytest.raises(InjectError):
        inject_object(obj, SETTINGS)


@pytest.mark.parametrize("obj", [
    {"apiVersion": "example.com/v1", "kind": "Deployment", "spec": {}},  # not apps' Deployment
    {"apiVersion": "v1", "kind": "ConfigMap", "data": {"a": "b"}},
    {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "spec": {"hosts": ["a"]}},
    {"kind": "Mystery"},
])
def test_other_kinds_pass_through(obj):
    assert inject_object(obj, SETTINGS) == obj and uninject_object(obj) == obj


def test_uninject_leaves_pods_pymesh_did_not_inject():
    subject = pod()
    subject["spec"]["initContainers"] = [{"name": "istio-init", "image": "istio/proxyv2"}]
    assert uninject_pod(subject) == subject


# --- probes --------------------------------------------------------------------------------------

PROBED = [
    {"name": "web", "image": "web:1", "ports": [{"name": "http", "containerPort": 8080}],
     "livenessProbe": {"httpGet": {"path": "/live", "port": "http", "scheme": "HTTPS",
                                   "httpHeaders": [{"name": "X-Probe", "value": "1"}]},
                       "periodSeconds": 5, "timeoutSeconds": 2},
     "readinessProbe": {"tcpSocket": {"port": 8080}, "initialDelaySeconds": 3},
     "startupProbe": {"grpc": {"port": 9090, "service": "web"}, "failureThreshold": 30}},
    {"name": "worker", "image": "worker:1",
     "livenessProbe": {"exec": {"command": ["true"]}},
     "readinessProbe": {"httpGet": {"path": "/ready", "port": "missing"}}},
]


def test_probes_are_rewritten_to_the_health_port_and_restored():
    subject = pod(containers=copy.deepcopy(PROBED))
    injected = inject_pod(subject, None, SETTINGS)
    validate(injected)
    web, worker = injected["spec"]["containers"]
    for kind, suffix in (("livenessProbe", "livez"), ("readinessProbe", "readyz"), ("startupProbe", "startupz")):
        assert web[kind]["httpGet"] == {"path": f"/app-health/web/{suffix}", "port": 15021, "scheme": "HTTP"}
    assert web["livenessProbe"]["periodSeconds"] == 5 and web["readinessProbe"]["initialDelaySeconds"] == 3
    assert "tcpSocket" not in web["readinessProbe"] and "grpc" not in web["startupProbe"]
    assert worker["livenessProbe"] == PROBED[1]["livenessProbe"]  # exec runs in the app container
    assert worker["readinessProbe"] == PROBED[1]["readinessProbe"]  # a port no container declares
    probers = json.loads(env(container(injected["spec"], PROXY_NAME))[app_probes.PROBERS_ENV])
    assert probers["/app-health/web/livez"]["httpGet"] == {
        "path": "/live", "port": 8080, "scheme": "HTTPS", "httpHeaders": [{"name": "X-Probe", "value": "1"}]}
    assert probers["/app-health/web/livez"]["timeoutSeconds"] == 2
    assert probers["/app-health/web/readyz"] == {"tcpSocket": {"port": 8080}}
    assert probers["/app-health/web/startupz"] == {"grpc": {"port": 9090, "service": "web"}}
    assert set(probers) == {"/app-health/web/livez", "/app-health/web/readyz", "/app-health/web/startupz"}
    assert uninject_pod(injected) == subject


def test_probe_rewriting_can_be_turned_off():
    subject = pod({"sidecar.istio.io/rewriteAppHTTPProbers": "false"}, containers=copy.deepcopy(PROBED))
    injected = inject_pod(subject, None, SETTINGS)
    assert injected["spec"]["containers"] == subject["spec"]["containers"]
    assert app_probes.PROBERS_ENV not in env(container(injected["spec"], PROXY_NAME))
    off = InjectSettings(rewrite_app_probers=False)
    assert inject_pod(pod(containers=copy.deepcopy(PROBED)), None, off)["spec"]["containers"] == PROBED


# --- settings ------------------------------------------------------------------------------------


def test_settings_from_yaml_and_from_a_config_map():
    text = ("proxyImage: registry.local/pymesh:1\ncontrolAddress: ctl.mesh.svc:15010\nrevision: canary\n"
            "resources:\n  requests: {cpu: 50m}\n  limits: {memory: 512Mi}\nrewriteAppProbers: false\n"
            "neverInjectSelector:\n- matchLabels: {tier: db}\n")
    settings = load_settings(text)
    assert settings.proxy_image == "registry.local/pymesh:1" and settings.revision_name == "canary"
    assert settings.resources.cpu == "50m" and settings.resources.memory_limit == "512Mi"
    assert settings.resources.memory == "128Mi" and settings.never_inject_selector == ({"tier": "db"},)
    config_map = yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pymesh-injector"},
                                 "data": {"settings": text}})
    assert load_settings(config_map) == settings
    assert load_settings("") == InjectSettings()


@pytest.mark.parametrize("text, where", [
    ("proxyImag: x", "proxyImag"),
    ("policy: sometimes", "policy"),
    ("controlAddress: nowhere", "controlAddress"),
    ("includeInboundPorts: 'eighty'", "includeInboundPorts"),
    ("resources: {requests: {gpu: 1}}", "resources.requests.gpu"),
    ("initResources: {limits: 1}", "initResources.limits"),
    ("rewriteAppProbers: 'yes'", "rewriteAppProbers"),
    ("[1, 2", ""),
    ("- a list", ""),
    ("kind: ConfigMap\ndata: {}", "data.settings"),
])
def test_bad_settings_are_refused_naming_the_key(text, where):
    with pytest.raises(InjectError) as error:
        load_settings(text)
    assert error.value.where == where


TYPE_CONFUSED = [
    {"metadata": [], "spec": {"containers": [{"name": "a"}]}},
    {"metadata": {"annotations": ["x"]}, "spec": {"containers": [{"name": "a"}]}},
    {"metadata": {"labels": "app=a"}, "spec": {"containers": [{"name": "a"}]}},
    {"spec": {"containers": [1]}},
    {"spec": {"containers": [{"image": "no-name"}]}},
    {"spec": {"containers": [{"name": "a"}], "initContainers": {"name": "b"}}},
    {"spec": {"containers": [{"name": "a"}], "volumes": "tmp"}},
    {"spec": {"containers": [{"name": "a", "livenessProbe": "curl", "readinessProbe": {"httpGet": "/"},
                              "startupProbe": {"tcpSocket": {"port": None}}, "ports": "http"}]}},
    {"metadata": {"annotations": {"proxy.istio.io/config": "proxyMetadata: [1]"}}, "spec": {"containers": [{"name": "a"}]}},
    {"metadata": {"annotations": {"sidecar.istio.io/proxyCPU": 12}}, "spec": {"containers": [{"name": "a"}]}},
    {"spec": [], "metadata": {}},
]


@pytest.mark.parametrize("subject", TYPE_CONFUSED)
def test_type_confused_pods_are_refused_or_injected_whole(subject):
    """Whatever the shape, an InjectError or a pod that uninjects back to the input."""
    before = copy.deepcopy(subject)
    try:
        injected = inject_pod(subject, None, SETTINGS)
    except InjectError:
        assert subject == before  # the input is never touched
        return
    assert uninject_pod(injected) == before


@pytest.mark.parametrize("status", ["not json", "[1]", '{"initContainers": 5}', '{"created": [1]}',
                                    '{"labels": {"a": 1}}', '{"volumes": [null]}'])
def test_uninject_with_a_forged_status_is_refused_or_harmless(status):
    subject = pod({STATUS: status})
    subject["spec"]["initContainers"] = ["not a container"]
    try:
        uninject_pod(subject)
    except InjectError as error:
        assert STATUS in str(error) or "initContainers" in str(error)


def test_null_maps_and_lists_come_back_null():
    subject = {"metadata": {"name": "a", "labels": None, "annotations": None},
               "spec": {"containers": [{"name": "a", "image": "a"}], "initContainers": None, "volumes": None}}
    injected = inject_pod(subject, None, SETTINGS)
    assert [c["name"] for c in injected["spec"]["initContainers"]] == [INIT_NAME, PROXY_NAME]
    assert uninject_pod(injected) == subject


JUNK = [None, 0, -1, True, "", "x", "*", "10.0.0.0/8", [], [1], ["a"], {}, {"a": 1}, {"name": "pymesh-proxy"},
        "15021", "a" * 300]


def _mutate(node: object, rng, depth: int = 0) -> object:
    """`node` with one value somewhere replaced by junk (a seeded, bounded walk)."""
    if depth > 8 or not isinstance(node, (dict, list)) or not node or rng.random() < 0.2:
        return copy.deepcopy(rng.choice(JUNK))
    node = copy.copy(node)
    key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
    node[key] = _mutate(node[key], rng, depth + 1)
    return node


def test_mutated_pods_are_refused_or_injected_whole():
    """300 seeded mutations of a probed, annotated pod: each is an InjectError or a pod that
    validates and uninjects back to the mutated input; nothing else escapes."""
    import random

    rng = random.Random(14)
    base = pod({"traffic.sidecar.istio.io/excludeOutboundPorts": "5432", "proxy.istio.io/config": "concurrency: 2",
                "sidecar.istio.io/proxyCPU": "200m"}, containers=copy.deepcopy(PROBED), volumes=[{"name": "tmp", "emptyDir": {}}])
    outcomes = {"refused": 0, "injected": 0}
    for _ in range(300):
        subject = _mutate(base, rng)
        if not isinstance(subject, dict):
            continue
        before = copy.deepcopy(subject)
        try:
            injected = inject_pod(subject, None, SETTINGS)
        except InjectError:
            outcomes["refused"] += 1
            continue
        assert subject == before
        assert uninject_pod(injected) == before
        outcomes["injected"] += 1
    assert outcomes["refused"] > 10 and outcomes["injected"] > 10, outcomes


def test_mutated_injected_pods_uninject_or_are_refused():
    """An injected pod edited by hand (300 seeded mutations): uninject answers or refuses with
    InjectError, never another exception."""
    import random

    rng = random.Random(41)
    injected = inject_pod(pod(containers=copy.deepcopy(PROBED)), None, SETTINGS)
    for _ in range(300):
        subject = _mutate(injected, rng)
        if isinstance(subject, dict):
            try:
                assert isinstance(uninject_pod(subject), dict)
            except InjectError:
                pass
