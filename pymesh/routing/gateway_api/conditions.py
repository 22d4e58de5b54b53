"""Status conditions of Gateway API objects, as an implementation reports them (the spec's
condition types and reasons). Computed by the translation, printed by `pymesh analyze` and
served by the control server's /status."""

from __future__ import annotations

from dataclasses import dataclass, field

# condition types
ACCEPTED, PROGRAMMED, RESOLVED_REFS, CONFLICTED = "Accepted", "Programmed", "ResolvedRefs", "Conflicted"
# reasons
NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
NO_MATCHING_PARENT = "NoMatchingParent"
UNSUPPORTED_VALUE = "UnsupportedValue"
BACKEND_NOT_FOUND = "BackendNotFound"
REF_NOT_PERMITTED = "RefNotPermitted"
INVALID_KIND = "InvalidKind"
INVALID_CERTIFICATE_REF = "InvalidCertificateRef"
INVALID_ROUTE_KINDS = "InvalidRouteKinds"
UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
PROTOCOL_CONFLICT = "ProtocolConflict"
NO_CONFLICTS = "NoConflicts"
INVALID = "Invalid"


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str = ""

    def to_json(self) -> dict:
        return {"type": self.type, "status": "True" if self.status else "False", "reason": self.reason,
                "message": self.message}


def ok(kind: str, message: str = "") -> Condition:
    """The condition in its good state, whose reason is its own name (Accepted: Accepted)."""
    return Condition(kind, True, kind, message)


@dataclass(frozen=True)
class ListenerStatus:
    name: str
    attached_routes: int
    supported_kinds: tuple[str, ...]
    conditions: tuple[Condition, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "attachedRoutes": self.attached_routes,
                "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": k} for k in self.supported_kinds],
                "conditions": [c.to_json() for c in self.conditions]}


@dataclass(frozen=True)
class ParentStatus:
    """A route's status for one of its parentRefs."""

    parent: str  # "Gateway ns/name[/section][:port]" or "Service ns/name[:port]"
    conditions: tuple[Condition, ...]

    def to_json(self) -> dict:
        return {"parentRef": self.parent, "conditions": [c.to_json() for c in self.conditions]}


@dataclass(frozen=True)
class ObjectStatus:
    kind: str  # GatewayClass | Gateway | HTTPRoute | GRPCRoute
    namespace: str
    name: str
    conditions: tuple[Condition, ...] = ()
    listeners: tuple[ListenerStatus, ...] = ()
    parents: tuple[ParentStatus, ...] = ()
    addresses: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # valid settings that do nothing here, for analyze to warn about

    def to_json(self) -> dict:
        out: dict = {"kind": self.kind, "namespace": self.namespace, "name": self.name}
        if self.conditions:
            out["conditions"] = [c.to_json() for c in self.conditions]
        if self.addresses:
            out["addresses"] = list(self.addresses)
        if self.listeners:
            out["listeners"] = [l.to_json() for l in self.listeners]
        if self.parents:
            out["parents"] = [p.to_json() for p in self.parents]
        return out

    def problems(self) -> list[str]:
        """One line per condition not in its good state (Conflicted is good when False), and per note."""
        where = f"{self.kind} {self.namespace}/{self.name}"
        out = [f"{where}: {c.type} {c.reason}: {c.message}" for c in self.conditions if c.status == (c.type == CONFLICTED)]
        for l in self.listeners:
            out += [f"{where} listener {l.name}: {c.type} {c.reason}: {c.message}" for c in l.conditions
                    if c.status == (c.type == CONFLICTED)]
        for p in self.parents:
            out += [f"{where} parent {p.parent}: {c.type} {c.reason}: {c.message}" for c in p.conditions if not c.status]
        return out + [f"{where}: {note}" for note in self.notes]


@dataclass
class Problems:
    """What went wrong resolving one route's references (the worst reason wins the condition)."""

    reason: str = ""
    messages: list[str] = field(default_factory=list)

    def add(self, reason: str, message: str) -> None:
        if not self.reason or _RANK.get(reason, 0) > _RANK.get(self.reason, 0):
            self.reason = reason
        if message not in self.messages:
            self.messages.append(message)

    def condition(self) -> Condition:
        if not self.reason:
            return ok(RESOLVED_REFS, "All references resolved")
        return Condition(RESOLVED_REFS, False, self.reason, "; ".join(self.messages))


_RANK = {BACKEND_NOT_FOUND: 1, INVALID_KIND: 2, REF_NOT_PERMITTED: 3}
