"""Header mutations and URI rewrites from VirtualService routes, applied to raw header lists."""

from __future__ import annotations

from pymesh.api import model
from pymesh.http.message import Header
from pymesh.routing.snapshot import HeaderOps


def apply_header_ops(headers: list[Header], ops: HeaderOps) -> list[Header]:
    """Istio's order: remove, then set (replace), then add (append)."""
    drop = {name.encode("latin-1") for name in ops.remove}
    drop.update(name.encode("latin-1") for name, _ in ops.set)
    result = [(n, v) for n, v in headers if n not in drop] if drop else list(headers)
    for name, value in ops.set:
        result.append((name.encode("latin-1"), value.encode("latin-1")))
    for name, value in ops.add:
        result.append((name.encode("latin-1"), value.encode("latin-1")))
    return result


def rewrite_target(rewrite: model.HTTPRewrite, matched_prefix: str | None, target: str) -> tuple[str, str]:
    """The upstream request target and authority after an HTTPRewrite.

    With a prefix match only the matched prefix is replaced (Envoy's prefix_rewrite); otherwise
    the whole path is. The query string is kept either way.
    """
    if not rewrite.uri:
        return target, rewrite.authority
    path, sep, query = target.partition("?")
    if matched_prefix is not None:
        new_path = rewrite.uri + path[len(matched_prefix) :]
    else:
        new_path = rewrite.uri
    if not new_path.startswith("/"):
        new_path = "/" + new_path
    return new_path + sep + query, rewrite.authority
