"""The verified end-user identity a request carries: what RequestAuthentication produces and
AuthorizationPolicy reads (`requestPrincipals`, `request.auth.*`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True, slots=True)
class RequestPrincipal:
    """A request's verified JWT, as AuthorizationPolicy sees it."""
    principal: str            # "<iss>/<sub>"
    audiences: tuple[str, ...]
    presenter: str            # azp, "" when absent
    claims: Mapping[str, Any] # the verified payload
