"""TokenReview (authentication.k8s.io/v1), the pure part: the review the control server creates
for a bearer token that is not a join token, and what its answer proves.

Istio's CA does the same (security/pkg/server/ca/authenticate/kubeauth): the API server checks
the token's signature, expiry, audience and that its pod and ServiceAccount still exist; we only
trust its answer when it is authenticated, names our audience among `status.audiences`, and the
user is a ServiceAccount (`system:serviceaccount:<ns>:<sa>`, in the `system:serviceaccounts`
group). Anything else is refused with the reason, never with the token.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from pymesh.kube.resources import TOKEN_REVIEWS
from pymesh.security.jointoken import TokenRefused

AUDIENCE = "pymesh-ca"  # the projected token's audience: for us and nobody else
SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
POD_NAME = "authentication.kubernetes.io/pod-name"
MAX_TOKEN_LENGTH = 16384  # a projected token is ~1 KB; a longer one is refused unsent
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")  # a DNS subdomain, what namespaces and SAs are
MAX_SHOWN = 120  # characters of an API server's error quoted in a refusal


@dataclass(frozen=True)
class ReviewedAccount:
    """What a positive review proves: the token's ServiceAccount (and pod, for the log)."""

    namespace: str
    service_account: str
    pod: str = ""


def review_body(token: str, audience: str = AUDIENCE) -> dict:
    """The TokenReview to create for `token`."""
    return {"apiVersion": TOKEN_REVIEWS.api_version, "kind": TOKEN_REVIEWS.kind,
            "spec": {"token": token, "audiences": [audience]}}


def check_token_shape(token: str) -> None:
    """TokenRefused for what is plainly not a ServiceAccount token (a JWT: three base64url
    parts), before the API server is asked."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise TokenRefused(f"bearer token longer than {MAX_TOKEN_LENGTH} characters")
    if token.count(".") != 2 or not re.fullmatch(r"[A-Za-z0-9_\-.]+", token):
        raise TokenRefused("bearer token is neither a pymesh join token (pm1.) nor a ServiceAccount token (a JWT)")


def judge(review: dict, audience: str = AUDIENCE) -> ReviewedAccount:
    """The account a TokenReview's answer proves; TokenRefused (with the reason) otherwise."""
    status = review.get("status") if isinstance(review, dict) else None
    if not isinstance(status, dict):
        raise TokenRefused("TokenReview: the answer has no status")
    if status.get("authenticated") is not True:
        error = status.get("error")
        reason = f": {_shown(error)}" if isinstance(error, str) and error else ""
        raise TokenRefused(f"TokenReview: the ServiceAccount token is not authenticated{reason}")
    audiences = status.get("audiences")
    if not isinstance(audiences, list) or audience not in audiences:
        raise TokenRefused(f"TokenReview: the token is not for the audience {audience} "
                           f"(the API server answered {_shown(json.dumps(audiences))})")
    user = status.get("user") if isinstance(status.get("user"), dict) else {}
    username = user.get("username")
    if not isinstance(username, str) or not username.startswith(SA_PREFIX):
        raise TokenRefused(f"TokenReview: {_shown(json.dumps(username))} is not a ServiceAccount "
                           f"({SA_PREFIX}<namespace>:<name>)")
    namespace, sep, name = username[len(SA_PREFIX):].partition(":")
    if not sep or not _NAME.match(namespace) or not _NAME.match(name) or len(namespace) > 63:
        raise TokenRefused(f"TokenReview: {_shown(username)} is not a ServiceAccount ({SA_PREFIX}<namespace>:<name>)")
    groups = user.get("groups")
    if not isinstance(groups, list) or SA_GROUP not in groups:
        raise TokenRefused(f"TokenReview: {username} is not in the group {SA_GROUP}")
    pods = (user.get("extra") or {}).get(POD_NAME) if isinstance(user.get("extra"), dict) else None
    pod = pods[0] if isinstance(pods, list) and pods and isinstance(pods[0], str) else ""
    return ReviewedAccount(namespace, name, pod[:253])


def unverified_claims(token: str) -> dict:
    """A JWT's payload, NOT verified: only for what the holder reads of its own token (the
    proxy's namespace and service account, to ask for) and for bounding a cache by `exp` of a
    token the API server has verified. ValueError when it is not a JWT with a JSON payload."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT (three base64url parts)")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        raise ValueError("the JWT's payload is not base64url JSON") from None
    if not isinstance(claims, dict):
        raise ValueError("the JWT's payload is not an object")
    return claims


def expiry(token: str) -> float | None:
    """The token's `exp` (Unix time), None when it has none readable."""
    try:
        exp = unverified_claims(token).get("exp")
    except ValueError:
        return None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def account_of(claims: dict) -> tuple[str, str]:
    """(namespace, service account) a projected token names, from its `kubernetes.io` claim
    (its `sub`, system:serviceaccount:<ns>:<sa>, as a fallback); ValueError without either."""
    kube = claims.get("kubernetes.io")
    if isinstance(kube, dict):
        account = kube.get("serviceaccount")
        namespace = kube.get("namespace")
        name = account.get("name") if isinstance(account, dict) else None
        if isinstance(namespace, str) and isinstance(name, str) and namespace and name:
            return namespace, name
    subject = claims.get("sub")
    if isinstance(subject, str) and subject.startswith(SA_PREFIX):
        namespace, sep, name = subject[len(SA_PREFIX):].partition(":")
        if sep and namespace and name:
            return namespace, name
    raise ValueError("the token names no ServiceAccount (no kubernetes.io claim, no sub system:serviceaccount:...)")


def _shown(value: str) -> str:
    """An API server's text as one printable line, cut to MAX_SHOWN characters."""
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in value[:MAX_SHOWN])
    return text + ("..." if len(value) > MAX_SHOWN else "")
