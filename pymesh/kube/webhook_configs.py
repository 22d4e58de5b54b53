"""The control server's own webhook configurations (kube/base/webhooks.yaml): their names, and the
JSON patch that puts the CA bundle of the webhooks' serving certificate into their `caBundle`,
as istiod's webhook controller does. Pure: pymesh.control.kube.ca_bundle does the API calls.

Only the entries that call our Service are touched, and the patch starts with a `test` of the
resourceVersion, so a configuration changed meanwhile (a `kubectl apply` resetting caBundle) is
re-read and patched again instead of overwritten. A configuration with cert-manager's
`cert-manager.io/inject-ca-from` annotation is cert-manager's to fill: never patched here (two
writers would fight over the field).
"""

from __future__ import annotations

import base64

from pymesh.kube.resources import MUTATING_WEBHOOK_CONFIGURATIONS, VALIDATING_WEBHOOK_CONFIGURATIONS, ResourceType

INJECTOR = "pymesh-sidecar-injector"  # the MutatingWebhookConfiguration's name
VALIDATOR = "pymesh-validator"  # the ValidatingWebhookConfiguration's name
CONFIGURATIONS: tuple[tuple[ResourceType, str], ...] = (
    (MUTATING_WEBHOOK_CONFIGURATIONS, INJECTOR), (VALIDATING_WEBHOOK_CONFIGURATIONS, VALIDATOR))
CERT_MANAGER_INJECT = "cert-manager.io/inject-ca-from"
# The API groups the validator's rules send and /validate checks: Istio's (as istiod's validator)
# and pymesh's. Not the Gateway API's: Istio's webhook does not validate it either, its CRDs
# carry their own CEL validation, and another controller's routes must never be refused by us
# (the control server reports an invalid one as any custom resource: an Event, its status).
VALIDATED_GROUPS = frozenset({"networking.istio.io", "security.istio.io", "telemetry.istio.io", "pymesh.dev"})


def ca_bundle_patch(config: dict, bundle_pem: bytes, service: str, namespace: str) -> list[dict]:
    """The JSON patch setting `caBundle` on every webhook of `config` that calls
    `service`.`namespace`; empty when none needs it (or cert-manager owns the field)."""
    annotations = (config.get("metadata") or {}).get("annotations") or {}
    if CERT_MANAGER_INJECT in annotations:
        return []
    bundle = base64.b64encode(bundle_pem).decode("ascii")
    ops = []
    for index, webhook in enumerate(config.get("webhooks") or ()):
        endpoint = webhook.get("clientConfig") if isinstance(webhook, dict) else None
        target = (endpoint or {}).get("service") or {}
        if target.get("name") != service or target.get("namespace") != namespace:
            continue
        if endpoint.get("caBundle") != bundle:
            ops.append({"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": bundle})
    if not ops:
        return []
    version = (config.get("metadata") or {}).get("resourceVersion", "")
    return [{"op": "test", "path": "/metadata/resourceVersion", "value": version}, *ops]
