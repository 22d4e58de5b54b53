"""PeerAuthentication is read and validated as Istio's ValidatePeerAuthentication and CRD do;
Istio's documented examples load."""

from __future__ import annotations

import pytest

from pymesh.api import model
from pymesh.api.load import load_text


def load(spec: str, api: str = "security.istio.io/v1", metadata: str = "{name: pa, namespace: foo}"):
    text = f"apiVersion: {api}\nkind: PeerAuthentication\nmetadata: {metadata}\nspec:\n{spec}"
    return load_text(text, "pa.yaml")


def errors(spec: str) -> list[str]:
    return [f"{e.line} {e.path}: {e.message}" for e in load(spec).errors]


ISTIO_EXAMPLES = [  # istio/api security/v1beta1/peer_authentication.proto's examples
    ("  mtls: {mode: STRICT}\n", None, "STRICT", ()),
    ("  selector: {matchLabels: {app: finance}}\n  mtls: {mode: STRICT}\n", {"app": "finance"}, "STRICT", ()),
    ("  selector: {matchLabels: {app: finance}}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n",
     {"app": "finance"}, "STRICT", (model.PortMtls(8080, "DISABLE"),)),
    ("  selector: {matchLabels: {app: finance}}\n  mtls: {mode: UNSET}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n",
     {"app": "finance"}, "UNSET", (model.PortMtls(8080, "DISABLE"),)),
    ("  mtls: {}\n", None, "UNSET", ()),
    ("", None, "UNSET", ()),  # an empty spec: inherit everything
    # Kubernetes' JSON writes map<uint32> keys as strings
    ('  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    "9090": {mode: PERMISSIVE}\n    80: {}\n',
     {"app": "a"}, "UNSET", (model.PortMtls(80, "UNSET"), model.PortMtls(9090, "PERMISSIVE"))),
]


@pytest.mark.parametrize("spec, selector, mode, ports", ISTIO_EXAMPLES)
@pytest.mark.parametrize("api", ["security.istio.io/v1", "security.istio.io/v1beta1"])
def test_istio_examples_load(spec, selector, mode, ports, api):
    result = load(spec, api)
    assert result.ok, result.errors
    (policy,) = result.config.peer_authentications
    assert (policy.selector, policy.mode, policy.port_level_mtls) == (selector, mode, ports)


@pytest.mark.parametrize("spec, expected", [
    ("  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n",
     ["6 spec.portLevelMtls: mesh/namespace peer authentication cannot have port level mTLS"]),
    ("  selector: {matchLabels: {}}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n",
     ["6 spec.portLevelMtls: mesh/namespace peer authentication cannot have port level mTLS"]),
    ("  selector: {matchLabels: {app: a}}\n  portLevelMtls: {}\n",
     ["6 spec.portLevelMtls: port level mTLS, if defined, must have at least one element"]),
    ("  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    0: {mode: STRICT}\n",
     ["7 spec.portLevelMtls[0]: port cannot be 0"]),
    ("  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    65536: {mode: STRICT}\n",
     ["7 spec.portLevelMtls[65536]: must be between 1 and 65535, got 65536"]),
    ("  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    http: {mode: STRICT}\n",
     ['7 spec.portLevelMtls[http]: expected a port number as key, got "http"']),
    ("  selector: {matchLabels: {app: a}}\n  portLevelMtls:\n    80: {mode: strict}\n",
     ["7 spec.portLevelMtls[80].mode: mode 'strict' is not valid (expected UNSET, DISABLE, PERMISSIVE or STRICT)"]),
    ("  mtls: {mode: MUTUAL}\n",
     ["5 spec.mtls.mode: mode 'MUTUAL' is not valid (expected UNSET, DISABLE, PERMISSIVE or STRICT)"]),
    ("  selector: {labels: {app: a}}\n",
     ['5 spec.selector.labels: unknown field (did you mean "matchLabels"?)']),
    # PeerAuthentication has no targetRef(s), in v1 or v1beta1
    ("  targetRef: {kind: Service, name: a}\n", ["5 spec.targetRef: unknown field"]),
    ("  targetRefs: [{kind: Service, name: a}]\n", ["5 spec.targetRefs: unknown field"]),
    ("  mtls: {mode: STRICT, extra: 1}\n", ["5 spec.mtls.extra: unknown field"]),
])
def test_invalid_policies_are_rejected_with_the_field_path(spec, expected):
    assert errors(spec) == expected


def test_creation_timestamp_is_read_quoted_or_not_and_checked():
    unquoted = load("  mtls: {mode: STRICT}\n", metadata="{name: a, creationTimestamp: 2024-05-01T12:00:00Z}")
    quoted = load("  mtls: {mode: STRICT}\n", metadata='{name: a, creationTimestamp: "2024-05-01T12:00:00Z"}')
    stamps = [r.config.peer_authentications[0].metadata.creation_timestamp for r in (unquoted, quoted)]
    assert stamps == [1714564800.0, 1714564800.0]
    bad = load("  mtls: {mode: STRICT}\n", metadata="{name: a, creationTimestamp: yesterday}")
    assert [e.path for e in bad.errors] == ["metadata.creationTimestamp"]
