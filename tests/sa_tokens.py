"""Projected ServiceAccount tokens as the kubelet mounts them (claims as a Kubernetes 1.30 API
server issues them: aud, exp, iat, iss, kubernetes.io {namespace, pod, serviceaccount}, nbf,
sub), signed RS256 by a test issuer, and the TokenReview answers a real API server gives for
them (shapes recorded from kube-apiserver 1.30: authenticated with user and audiences, or only
an error)."""

from __future__ import annotations

import time
import uuid

from jwt_tokens import Issuer

ISSUER = Issuer("https://kubernetes.default.svc.cluster.local")


def projected_token(namespace: str, service_account: str, pod: str = "", audience: str = "pymesh-ca",
                    ttl: float = 3600.0, now: float | None = None) -> str:
    now = time.time() if now is None else now
    kube = {"namespace": namespace, "node": {"name": "kind-worker", "uid": str(uuid.uuid4())},
            "pod": {"name": pod or f"{service_account}-7d4b9c-x2x9z", "uid": str(uuid.uuid4())},
            "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())}}
    return ISSUER.token(f"system:serviceaccount:{namespace}:{service_account}", lifetime=ttl, now=now,
                        aud=[audience], nbf=int(now), jti=str(uuid.uuid4()), **{"kubernetes.io": kube})


def authenticated(namespace: str, service_account: str, audiences: list[str], pod: str = "") -> dict:
    """status of a TokenReview the API server authenticated."""
    return {
        "authenticated": True,
        "user": {
            "username": f"system:serviceaccount:{namespace}:{service_account}",
            "uid": str(uuid.uuid4()),
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
            "extra": {"authentication.kubernetes.io/credential-id": [f"JTI={uuid.uuid4()}"],
                      "authentication.kubernetes.io/node-name": ["kind-worker"],
                      "authentication.kubernetes.io/node-uid": [str(uuid.uuid4())],
                      "authentication.kubernetes.io/pod-name": [pod or f"{service_account}-7d4b9c-x2x9z"],
                      "authentication.kubernetes.io/pod-uid": [str(uuid.uuid4())]},
        },
        "audiences": audiences,
    }


def unauthenticated(error: str = "[invalid bearer token, service account token has expired]") -> dict:
    return {"user": {}, "error": error}


def review(spec: dict, status: dict) -> dict:
    return {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}
