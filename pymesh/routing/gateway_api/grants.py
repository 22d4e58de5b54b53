"""ReferenceGrants: whether an object in one namespace may refer to one in another."""

from __future__ import annotations

from pymesh.api import model

From = tuple[str, str, str]  # group, kind, namespace of the referring object
To = tuple[str, str, str, str]  # group, kind, namespace, name of the referent


class Grants:
    def __init__(self, grants: tuple[model.ReferenceGrant, ...]):
        self._grants = grants

    def allows(self, source: From, target: To) -> bool:
        """A grant in the referent's namespace lists the referrer's (group, kind, namespace) in
        `from` and the referent's (group, kind, name or any) in `to`. A same-namespace reference
        needs no grant."""
        group, kind, namespace, name = target
        if source[2] == namespace:
            return True
        for grant in self._grants:
            if grant.metadata.namespace != namespace or source not in grant.grants_from:
                continue
            if any((g, k) == (group, kind) and n in ("", name) for g, k, n in grant.grants_to):
                return True
        return False
