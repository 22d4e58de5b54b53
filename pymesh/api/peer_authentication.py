"""PeerAuthentication (security.istio.io v1/v1beta1): which inbound connections a workload's
sidecar accepts, mutual TLS or plaintext. Validated as Istio's ValidatePeerAuthentication and
its CRD: portLevelMtls only with a non-empty selector ("mesh/namespace peer authentication cannot
have port level mTLS"), not empty when given, ports 1-65535; mode one of UNSET, DISABLE,
PERMISSIVE, STRICT. PeerAuthentication has no targetRef(s) in any version (only selector).

    spec:
      selector: {matchLabels: {app: finance}}   # absent: the namespace (root namespace: the mesh)
      mtls: {mode: STRICT}                       # absent or UNSET: inherit
      portLevelMtls:
        8080: {mode: DISABLE}                    # the workload's port, not the service's

Which policy applies to a workload, and the mode of each port, is decided in
`pymesh.routing.peer_authn`.
"""

from __future__ import annotations

from pymesh.api import model, shapes
from pymesh.api.reader import PORT, Reader, Slot, choice, describe, message
from pymesh.api.request_authentication import match_labels_selector  # the security kinds' selector
from pymesh.api.yamltree import LineMap

MODE = choice("mode", model.MTLS_MODES)
MUTUAL_TLS = message(shapes.MUTUAL_TLS, lambda r: r.get("mode", MODE, "UNSET"))


def peer_authentication(metadata: model.Metadata, r: Reader) -> model.PeerAuthentication:
    selector = match_labels_selector(r)
    ports = _port_level_mtls(r)
    if ports is not None and not selector:
        r.error("portLevelMtls", "mesh/namespace peer authentication cannot have port level mTLS")
    return model.PeerAuthentication(
        metadata=metadata,
        selector=selector,
        mode=r.get("mtls", MUTUAL_TLS, "UNSET"),
        port_level_mtls=ports or (),
    )


def _port_level_mtls(r: Reader) -> tuple[model.PortMtls, ...] | None:
    """The map of port -> MutualTLS, in port order; None when absent. Keys are YAML integers
    (`8080:`) or, as Kubernetes' JSON writes a map<uint32> key, digit strings (`"8080":`)."""
    slot = r.slot("portLevelMtls")
    if slot is None:
        return None
    if not isinstance(slot.value, LineMap):
        r.error("portLevelMtls", f"expected a mapping of port numbers, got {describe(slot.value)}")
        return ()
    if not slot.value:
        r.error("portLevelMtls", "port level mTLS, if defined, must have at least one element")
        return ()
    found: dict[int, model.PortMtls] = {}
    for key, value in slot.value.items():
        line = slot.value.key_lines[key]
        entry = Slot(value, line, f"{slot.path}[{key}]")
        port = _port(r, Slot(key, line, entry.path))
        if port is None:
            continue
        if port in found:
            r.sink.at(entry, f"duplicate port {port}")
            continue
        mode = MUTUAL_TLS(r.sink, entry)
        if mode is not None:
            found[port] = model.PortMtls(port, mode)
    return tuple(found[port] for port in sorted(found))


def _port(r: Reader, key: Slot) -> int | None:
    value = key.value
    if isinstance(value, str) and value.isdigit() and value.isascii():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        r.sink.at(key, f"expected a port number as key, got {describe(key.value)}")
        return None
    if value == 0:
        r.sink.at(key, "port cannot be 0")
        return None
    return PORT(r.sink, Slot(value, key.line, key.path))
