"""What the control server writes back to Kubernetes about the custom resources it reads (pure):
the status of a rejected Istio resource (`status.validationMessages` and the PassedAnalysis
condition, as Istio's status writer shapes them), the Gateway API's statuses (`status.conditions`, listeners, parents)
and the Warning Event regarding a rejected object.

Every status function returns the object's whole new status, computed from its current one: the
entries other writers own are kept, a condition that did not change keeps its
lastTransitionTime, so an unchanged outcome gives an equal status and the caller writes nothing.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timezone
from typing import Sequence

from pymesh.api import model
from pymesh.api.errors import ConfigError
from pymesh.routing.gateway_api import conditions as c, parent_label
from pymesh.routing.gateway_api.parents import BUILTIN_CLASSES, GATEWAY_GROUP

REPORTER = "pymesh.dev/control"  # the Event's reportingController
CONTROLLER = BUILTIN_CLASSES["pymesh"]  # a route's status.parents[].controllerName
# Istio's analysis message for a resource its schema validation refuses (istioctl analyze's IST0106)
SCHEMA_ERROR = {"code": "IST0106", "name": "SchemaValidationError"}
SCHEMA_ERROR_DOCS = "https://istio.io/latest/docs/reference/config/analysis/ist0106/"
REASON = SCHEMA_ERROR["name"]  # of the Event
# the condition Istio's docs (reference/config/config-status) give analysis results
ANALYSIS, ERRORS_FOUND = "PassedAnalysis", "errorsFound"
MAX_NOTE = 1024  # bytes: the API server refuses a longer Event note
MAX_MESSAGE = 32768  # characters: metav1.Condition's message limit


def timestamp(now: float, micro: bool = False) -> str:
    """RFC 3339 in UTC, as Kubernetes writes Time (seconds) and MicroTime (microseconds)."""
    moment = datetime.fromtimestamp(now, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def errors_text(errors: Sequence[ConfigError], in_force: bool) -> str:
    kept = "the last good version stays in force" if in_force else "nothing from it applies"
    return "; ".join(f"{e.path}: {e.message}" if e.path else e.message for e in errors) + f" ({kept})"


def istio_status(obj: dict, errors: Sequence[ConfigError], in_force: bool, now: float) -> dict:
    """An Istio resource's status: while it is rejected, Istio's IST0106 validation message and
    a PassedAnalysis=False condition carrying the errors; once it loads, neither."""
    current = _status(obj)
    messages = [m for m in current.get("validationMessages") or [] if not _ours(m)]
    conditions = [x for x in current.get("conditions") or [] if isinstance(x, dict) and x.get("type") != ANALYSIS]
    status = {k: v for k, v in current.items() if k not in ("validationMessages", "conditions")}
    if errors:
        messages.append({"type": dict(SCHEMA_ERROR), "level": "ERROR", "documentationUrl": SCHEMA_ERROR_DOCS})
        generation = str(_generation(obj))
        conditions.append(_condition(current.get("conditions"), {
            "type": ANALYSIS, "status": "False", "reason": ERRORS_FOUND,
            "message": errors_text(errors, in_force)[:MAX_MESSAGE], "observedGeneration": generation}, now))
        status["observedGeneration"] = generation
    if messages:
        status["validationMessages"] = messages
    if conditions:
        status["conditions"] = conditions
    return status


def gateway_api_status(obj: dict, computed: c.ObjectStatus, now: float) -> dict:
    """A Gateway API object's status from what the translation computed: a GatewayClass's or
    Gateway's conditions (and a Gateway's listeners and addresses); a route's parents, keeping
    the entries of other controllers."""
    current = _status(obj)
    generation = _generation(obj)
    status = dict(current)
    if computed.kind in ("GatewayClass", "Gateway"):
        status["conditions"] = _conditions(current.get("conditions"), computed.conditions, generation, now)
    if computed.kind == "Gateway":
        held = {l.get("name"): l for l in current.get("listeners") or [] if isinstance(l, dict)}
        status["listeners"] = [
            {**l.to_json(), "conditions": _conditions(held.get(l.name, {}).get("conditions"), l.conditions,
                                                      generation, now)} for l in computed.listeners]
        if computed.addresses:
            status["addresses"] = [{"type": _address_type(a), "value": a} for a in computed.addresses]
    if computed.parents:
        refs = _parent_refs(obj)
        others = [p for p in current.get("parents") or [] if isinstance(p, dict) and p.get("controllerName") != CONTROLLER]
        ours = {_label_of(p.get("parentRef"), obj): p for p in current.get("parents") or []
                if isinstance(p, dict) and p.get("controllerName") == CONTROLLER}
        status["parents"] = others + [
            {"parentRef": refs[p.parent], "controllerName": CONTROLLER,
             "conditions": _conditions(ours.get(p.parent, {}).get("conditions"), p.conditions, generation, now)}
            for p in computed.parents if p.parent in refs]
    return status


def rejection_event(obj: dict, errors: Sequence[ConfigError], in_force: bool, now: float, instance: str) -> dict:
    """The events.k8s.io/v1 Warning Event regarding a rejected object."""
    metadata = obj.get("metadata") or {}
    name = str(metadata.get("name") or "unnamed")
    note = errors_text(errors, in_force).encode()[:MAX_NOTE].decode(errors="ignore")
    regarding = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": name}
    for key in ("namespace", "uid", "resourceVersion"):
        if metadata.get(key):
            regarding[key] = metadata[key]
    # an Event about a cluster-scoped object (a GatewayClass) goes to default, as Kubernetes' own do
    event_meta = {"name": f"{name[:200]}.{int(now * 1e9):x}", "namespace": metadata.get("namespace") or "default"}
    return {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": event_meta,
            "eventTime": timestamp(now, micro=True), "reportingController": REPORTER,
            "reportingInstance": instance[:128], "action": "Validate", "reason": REASON, "type": "Warning",
            "note": note, "regarding": regarding}


def _status(obj: dict) -> dict:
    status = obj.get("status")
    return status if isinstance(status, dict) else {}


def _generation(obj: dict) -> int:
    generation = (obj.get("metadata") or {}).get("generation")
    return generation if isinstance(generation, int) else 0


def _ours(message: object) -> bool:
    return isinstance(message, dict) and isinstance(message.get("type"), dict) and \
        message["type"].get("code") == SCHEMA_ERROR["code"]


def _condition(held: object, new: dict, now: float) -> dict:
    """`new` with the lastTransitionTime of the held condition of its type if its status is the
    same (so a condition that did not change is written the same), else now."""
    previous = next((x for x in held or [] if isinstance(x, dict) and x.get("type") == new["type"]), None)
    if previous is not None and previous.get("status") == new["status"] and previous.get("lastTransitionTime"):
        return {**new, "lastTransitionTime": previous["lastTransitionTime"]}
    return {**new, "lastTransitionTime": timestamp(now)}


def _conditions(held: object, computed: Sequence[c.Condition], generation: int, now: float) -> list[dict]:
    return [_condition(held, {**x.to_json(), "observedGeneration": generation}, now) for x in computed]


def _address_type(address: str) -> str:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return "Hostname"
    return "IPAddress"


def _reference(ref: dict) -> model.ObjectReference:
    port = ref.get("port")
    return model.ObjectReference(str(ref.get("name") or ""), str(ref.get("group", GATEWAY_GROUP)),
                                 str(ref.get("kind") or "Gateway"), str(ref.get("namespace") or ""),
                                 str(ref.get("sectionName") or ""), port if isinstance(port, int) else None)


def _label_of(ref: object, obj: dict) -> str:
    """A parentRef as the translation names it ("Gateway ns/name/section:port")."""
    if not isinstance(ref, dict):
        return ""
    parsed = _reference(ref)
    return parent_label(parsed, parsed.namespace or str((obj.get("metadata") or {}).get("namespace") or ""))


def _parent_refs(obj: dict) -> dict[str, dict]:
    """The route's parentRefs by the translation's name for them."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    return {_label_of(ref, obj): ref for ref in spec.get("parentRefs") or [] if isinstance(ref, dict)}
