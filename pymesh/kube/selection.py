"""Which pods get a sidecar: Istio's injectRequired (pkg/kube/inject/webhook.go) and the default
injector webhooks' namespace and object selectors, with pymesh's key names beside Istio's. One
pure function, `injection_required`, that kube-inject and the `/inject` webhook both call.
"""

from __future__ import annotations

from typing import Mapping

from pymesh.kube.inject_settings import InjectSettings

# Opt in/out, on the pod (label over annotation, as Istio) and the namespace; pymesh's name wins over Istio's.
INJECT_KEYS = ("sidecar.pymesh.dev/inject", "sidecar.istio.io/inject")
NAMESPACE_KEYS = ("pymesh-injection", "istio-injection")
REVISION_KEYS = ("pymesh.dev/rev", "istio.io/rev")
TRUE = ("y", "yes", "true", "on")  # Istio's reading of the inject annotation (YAML 1.1 booleans)


def _first(mapping: Mapping | None, keys: tuple[str, ...]) -> str | None:
    mapping = mapping if isinstance(mapping, Mapping) else {}
    return next((str(mapping[key]) for key in keys if key in mapping), None)


def _matches(labels: Mapping, selector: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def webhook_selects(pod_labels: Mapping, namespace_labels: Mapping, settings: InjectSettings) -> bool:
    """Whether one of the injector's MutatingWebhookConfiguration entries would be called for
    this pod: Istio's four default selectors (namespace label, namespace revision, object
    revision, object label), with pymesh's key names beside Istio's."""
    ns_injection = _first(namespace_labels, NAMESPACE_KEYS)
    ns_revision = _first(namespace_labels, REVISION_KEYS)
    pod_inject = _first(pod_labels, INJECT_KEYS)
    pod_revision = _first(pod_labels, REVISION_KEYS)
    if pod_inject == "false":
        return False
    if ns_revision == settings.revision_name and ns_injection is None:
        return True  # rev.namespace: the namespace asks for this revision
    if ns_revision is None and ns_injection is None and pod_revision == settings.revision_name:
        return True  # rev.object: the pod asks for this revision
    if settings.revision:
        return False  # a named revision answers only for itself; the two below are the default's
    if ns_injection == "enabled":
        return True  # namespace: istio-injection=enabled
    return ns_injection is None and ns_revision is None and pod_inject == "true" and pod_revision is None


def injection_required(pod: Mapping, namespace: Mapping | None, settings: InjectSettings,
                       *, namespace_name: str | None = None) -> bool:
    """Whether `pod` (metadata+spec: a Pod or a pod template) gets a sidecar: Istio's
    injectRequired. With `namespace` (the Namespace object) the webhook's namespace and object
    selectors are applied first; without one (kube-inject, or a webhook the API server already
    filtered) only the pod's own opinion and the policy decide. Host-network pods never."""
    metadata = pod.get("metadata") if isinstance(pod.get("metadata"), Mapping) else {}
    spec = pod.get("spec") if isinstance(pod.get("spec"), Mapping) else {}
    if spec.get("hostNetwork"):
        return False
    ns_meta = (namespace or {}).get("metadata") or {}
    name = namespace_name or metadata.get("namespace") or ns_meta.get("name")
    if name in settings.ignored_namespaces:
        return False
    labels = metadata.get("labels") if isinstance(metadata.get("labels"), Mapping) else {}
    if namespace is not None and not webhook_selects(labels, ns_meta.get("labels") or {}, settings):
        return False
    opinion = _first(labels, INJECT_KEYS) or _first(metadata.get("annotations"), INJECT_KEYS)
    if opinion:
        return opinion.lower() in TRUE
    if any(_matches(labels, selector) for selector in settings.never_inject_selector):
        return False
    if any(_matches(labels, selector) for selector in settings.always_inject_selector):
        return True
    return settings.policy == "enabled"
