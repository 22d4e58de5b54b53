"""Admission webhooks, the pure part: reading an admission.k8s.io/v1 AdmissionReview, deciding
the answer of the injection webhook (a JSON patch) and of the validation webhook (allowed, or
denied naming the kind, namespace/name and field path as Istio's validation does), and the
RFC 6902 JSON patch between a pod and its injected form. No I/O: the HTTPS listener is
pymesh.control.kube.webhook.

A request whose envelope is wrong (not JSON, not an AdmissionReview v1, no uid) cannot be
answered with an AdmissionReview, since the answer must echo the uid: it is an `EnvelopeError`
with the HTTP status to send. Everything else gets a 200 with an AdmissionReview response.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Callable, Iterable

from pymesh.api.errors import ConfigError, ConfigWarning

API_VERSION = "admission.k8s.io/v1"
API_VERSIONS = (API_VERSION, "admission.k8s.io/v1beta1")  # answered in the version asked, as Istio's webhooks
KIND = "AdmissionReview"
MAX_WARNINGS = 16  # the API server shows each to the kubectl user; keep it readable
MAX_MESSAGE = 4096  # characters of a denial message (the API server relays it to the client)

# (pod with metadata and spec, namespace) -> the injected pod, or None when it needs no injection
Injector = Callable[[dict, str], "dict | None"]
# a resource object -> its problems (ConfigWarning items among them do not deny)
Validator = Callable[[dict], list[ConfigError]]


class EnvelopeError(ValueError):
    """Not an AdmissionReview request we can answer: `status` is the HTTP status to send."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Review:
    api_version: str  # the answer must be in the same version
    request: dict


def read_request(body: bytes) -> Review:
    """The `request` of an AdmissionReview body (v1, or the older v1beta1 of the same shape),
    checked for what every answer needs."""
    try:
        review = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(400, f"the body is not JSON: {exc}") from None
    if not isinstance(review, dict):
        raise EnvelopeError(400, "the body is not a JSON object (an AdmissionReview)")
    if review.get("kind") != KIND or review.get("apiVersion") not in API_VERSIONS:
        raise EnvelopeError(400, f"expected apiVersion {API_VERSION} kind {KIND}, got apiVersion "
                            f"{_shown(review.get('apiVersion'))} kind {_shown(review.get('kind'))} "
                            "(the webhook configurations ask for admissionReviewVersions [v1])")
    request = review.get("request")
    if not isinstance(request, dict):
        raise EnvelopeError(400, "the AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise EnvelopeError(400, "request.uid is missing: the answer could not be matched to the request")
    operation = request.get("operation")
    if operation not in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        raise EnvelopeError(400, f"request.operation: {_shown(operation)} is not CREATE, UPDATE, DELETE or CONNECT")
    if operation in ("CREATE", "UPDATE") and not isinstance(request.get("object"), dict):
        raise EnvelopeError(400, f"request.object is missing or not an object in a {operation} request")
    return Review(review["apiVersion"], request)


def in_version(answer: dict, api_version: str) -> dict:
    """The answer as an AdmissionReview of the version the request came in."""
    return {**answer, "apiVersion": api_version}


def review_inject(request: dict, inject: Injector) -> dict:
    """The injection webhook's answer: allowed, with a JSON patch when the pod gets a sidecar.
    Only a Pod CREATE is injected (as Istio's webhook rules select); anything else passes."""
    uid = request["uid"]
    if request["operation"] != "CREATE" or _kind(request) != ("", "Pod"):
        return allowed(uid)
    pod = request["object"]
    if not isinstance(pod.get("spec"), dict) or not isinstance(pod.get("metadata", {}), dict):
        return denied(uid, "cannot inject: request.object is not a pod (no spec)")
    namespace = request.get("namespace") or pod.get("metadata", {}).get("namespace") or "default"
    try:
        injected = inject(pod, namespace)
    except ValueError as exc:  # the injector's clear refusal (e.g. a container already named like ours)
        return denied(uid, f"cannot inject the sidecar into pod {namespace}/{_pod_name(pod)}: {exc}")
    if injected is None:
        return allowed(uid)
    return allowed(uid, json_patch(pod, injected))


def review_validate(request: dict, validate: Validator, known: Callable[[str, str], bool]) -> dict:
    """The validation webhook's answer: CREATE and UPDATE of a kind pymesh reads (`known(kind,
    apiVersion)`) are validated; an invalid one is denied with every problem and its field path.
    DELETE, CONNECT and kinds pymesh does not read are allowed."""
    uid = request["uid"]
    if request["operation"] not in ("CREATE", "UPDATE"):
        return allowed(uid)
    obj = request["object"]
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api_version, str) or not known(kind, api_version):
        return allowed(uid)
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    namespace = metadata.get("namespace") or request.get("namespace") or "default"
    name = metadata.get("name") or request.get("name") or ""
    problems = validate(obj)
    errors = [p for p in problems if not isinstance(p, ConfigWarning)]
    warnings = [f"{kind} {namespace}/{name}: {_located(p)}" for p in problems if isinstance(p, ConfigWarning)]
    if errors:
        return denied(uid, validation_message(kind, namespace, name, errors), warnings=warnings)
    return allowed(uid, warnings=warnings)


def validation_message(kind: str, namespace: str, name: str, errors: Iterable[ConfigError]) -> str:
    """Istio's wording: `configuration is invalid: <kind> <ns>/<name>: <field path>: <message>`,
    one problem per line after the first."""
    lines = [f"{kind} {namespace}/{name}: {_located(error)}" for error in errors]
    text = "configuration is invalid: " + "\n".join(lines)
    return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 20] + " ... (truncated)"


def allowed(uid: str, patch: list[dict] | None = None, warnings: Iterable[str] = ()) -> dict:
    response: dict = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode("ascii")
    return _review(response, warnings)


def denied(uid: str, message: str, code: int = 400, warnings: Iterable[str] = ()) -> dict:
    return _review({"uid": uid, "allowed": False, "status": {"code": code, "message": message}}, warnings)


def _review(response: dict, warnings: Iterable[str]) -> dict:
    shown = list(warnings)[:MAX_WARNINGS]
    if shown:
        response["warnings"] = shown
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def json_patch(before: object, after: object, path: str = "") -> list[dict]:
    """A small RFC 6902 patch turning `before` into `after` (add/remove/replace only): maps key
    by key; lists keep their common head and tail and change only the middle, so the containers
    and volumes an injector prepends or appends become `add`s, not a rewrite of the list."""
    if isinstance(before, dict) and isinstance(after, dict):
        ops = [{"op": "remove", "path": f"{path}/{_escape(key)}"} for key in before if key not in after]
        for key, value in after.items():
            child = f"{path}/{_escape(key)}"
            ops.extend(json_patch(before[key], value, child) if key in before
                       else [{"op": "add", "path": child, "value": value}])
        return ops
    if isinstance(before, list) and isinstance(after, list):
        return _list_patch(before, after, path)
    return [] if _same(before, after) else [{"op": "replace", "path": path, "value": after}]


def _list_patch(before: list, after: list, path: str) -> list[dict]:
    head = 0
    while head < min(len(before), len(after)) and _same(before[head], after[head]):
        head += 1
    tail = 0
    while tail < min(len(before), len(after)) - head and _same(before[-1 - tail], after[-1 - tail]):
        tail += 1
    old, new = before[head:len(before) - tail], after[head:len(after) - tail]
    paired = min(len(old), len(new))
    ops = [op for i in range(paired) for op in json_patch(old[i], new[i], f"{path}/{head + i}")]
    ops += [{"op": "add", "path": f"{path}/{head + i}", "value": new[i]} for i in range(paired, len(new))]
    ops += [{"op": "remove", "path": f"{path}/{head + paired}"} for _ in range(paired, len(old))]
    return ops


def _same(a: object, b: object) -> bool:
    """JSON equality: 1, 1.0 and True are different JSON values, Python's == says equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _escape(key: str) -> str:
    """RFC 6901: `~` and `/` in a key (annotation names have slashes)."""
    return key.replace("~", "~0").replace("/", "~1")


def _kind(request: dict) -> tuple[object, object]:
    kind = request.get("kind") if isinstance(request.get("kind"), dict) else {}
    return kind.get("group"), kind.get("kind")


def _pod_name(pod: dict) -> str:
    metadata = pod.get("metadata") or {}
    return metadata.get("name") or (metadata.get("generateName") or "") + "*"


def _located(error: ConfigError) -> str:
    return f"{error.path}: {error.message}" if error.path else error.message


def _shown(value: object) -> str:
    text = json.dumps(value)
    return text if len(text) <= 64 else text[:61] + "..."
