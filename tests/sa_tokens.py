"""Projected ServiceAccount tokens as the kubelet mounts them (claims as a Kubernetes 1.30 API
server issues them: aud, exp, iat, iss, kubernetes.io {namespace, pod, serviceaccount}, nbf,
sub), signed RS256 by a test issuer, and the TokenReview answers a real API server gives for
them (shapes recorded from kube-apiserver 1.30: authenticated with user and audiences, or only
an error)."""

from __future__ import annotations

import json
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


class ApiServerReviews:
    """The stand-in API server's TokenReview (its `token_review` callback), deciding as a real
    one does: the signature by the cluster's issuer, exp/nbf, the token's audiences against the
    review's (an empty spec.audiences means the API server's own), and the bound pod still there
    (`deleted_pods`). Counts the reviews it answered."""

    API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"

    def __init__(self) -> None:
        from joserfc.jwk import KeySet

        self.keys = KeySet.import_key_set(ISSUER.jwks())
        self.deleted_pods: set[str] = set()
        self.fixed: dict[str, dict] = {}  # token -> the status to answer (a user's static token, say)
        self.calls = 0

    def __call__(self, spec: dict) -> dict:
        from joserfc import jwt as jose_jwt
        from joserfc.errors import JoseError

        self.calls += 1
        wanted = spec.get("audiences") or [self.API_AUDIENCE]
        if spec.get("token") in self.fixed:
            return self.fixed[spec["token"]]
        try:
            claims = jose_jwt.decode(spec.get("token", ""), self.keys, algorithms=["RS256"]).claims
        except (JoseError, ValueError):
            return unauthenticated("[invalid bearer token, square/go-jose: error in cryptographic primitive]")
        if not claims.get("nbf", 0) <= time.time() < claims.get("exp", 0):
            return unauthenticated("[invalid bearer token, service account token has expired]")
        audiences = [aud for aud in claims.get("aud", []) if aud in wanted]
        if not audiences:
            return unauthenticated(f"[invalid bearer token, token audiences {json.dumps(claims.get('aud'))} is invalid "
                                   f"for the target audiences {json.dumps(wanted)}]")
        kube = claims["kubernetes.io"]
        if kube["pod"]["name"] in self.deleted_pods:
            return unauthenticated(f"[invalid bearer token, pod \"{kube['pod']['name']}\" not found]")
        return authenticated(kube["namespace"], kube["serviceaccount"]["name"], audiences, kube["pod"]["name"])
