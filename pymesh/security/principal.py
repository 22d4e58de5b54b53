"""The verified JWT of a request, as RequestAuthentication hands it to AuthorizationPolicy."""

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
