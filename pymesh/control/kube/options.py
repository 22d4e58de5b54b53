"""`pymesh control serve --kubernetes`: how the control server reaches its cluster's API server,
what it checks there (the TokenReview audience and deadline), and how often it checks the root
ConfigMaps it publishes."""

from __future__ import annotations

from dataclasses import dataclass

from pymesh.kube.token_review import AUDIENCE


@dataclass(frozen=True)
class KubeOptions:
    kubeconfig: str | None = None  # None: in the cluster (its ServiceAccount), else $KUBECONFIG, ~/.kube/config
    context: str | None = None
    token_audience: str = AUDIENCE  # the projected tokens' audience, checked by TokenReview
    token_review_timeout: float = 5.0  # seconds: a slower API server refuses the request (never signs)
    root_cert_resync: float = 60.0  # seconds between checks of every namespace's pymesh-ca-root-cert
    namespaces: tuple[str, ...] = ()  # --namespace: discovery watches only these (default: all)
