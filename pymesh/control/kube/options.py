"""`pymesh control serve --kubernetes`: how the control server reaches its cluster's API server,
and what it checks there (the TokenReview audience and deadline)."""

from __future__ import annotations

from dataclasses import dataclass

from pymesh.kube.token_review import AUDIENCE


@dataclass(frozen=True)
class KubeOptions:
    kubeconfig: str | None = None  # None: in the cluster (its ServiceAccount), else $KUBECONFIG, ~/.kube/config
    context: str | None = None
    token_audience: str = AUDIENCE  # the projected tokens' audience, checked by TokenReview
    token_review_timeout: float = 5.0  # seconds: a slower API server refuses the request (never signs)
