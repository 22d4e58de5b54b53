"""VirtualService `http[].corsPolicy` (Istio's CorsPolicy), validated as Istio's webhook does:
origins are non-empty StringMatches (the deprecated `allowOrigin` list reads as exact matches,
used only without `allowOrigins`, as Istio translates it), methods are HTTP methods, header names
are tokens ("*" allowed), and maxAge is whole seconds."""

from __future__ import annotations

from pymesh.api import checks, common, model
from pymesh.api.reader import ISTIO_DURATION, Reader, Sink, Slot, boolean, choice, text

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
_METHOD = choice("method", METHODS)
_UNMATCHED = choice("unmatchedPreflights", ("FORWARD", "IGNORE"), aliases={"UNSPECIFIED": "FORWARD"})


def _header_name(value: str) -> str | None:
    return None if value == "*" else checks.match_header_name(value)


def _origin(sink: Sink, slot: Slot) -> model.StringMatch | None:
    match = common.STRING_MATCH(sink, slot)
    if match is not None and not match.value:
        sink.at(slot, "an empty string is not a valid match for CORS allow origins")
        return None
    return match


def _max_age(sink: Sink, slot: Slot) -> int | None:
    seconds = ISTIO_DURATION(sink, slot)
    if seconds is not None and seconds != int(seconds):
        sink.at(slot, "maxAge is accurate only to seconds precision")
        return None
    return None if seconds is None else int(seconds)


def cors_policy(r: Reader) -> model.CorsPolicy:
    origins = r.get_list("allowOrigins", _origin)
    legacy = r.get_list("allowOrigin", text(checks.not_empty))
    return model.CorsPolicy(
        allow_origins=origins or tuple(model.StringMatch("exact", o) for o in legacy),
        allow_methods=r.get_list("allowMethods", _METHOD),
        allow_headers=r.get_list("allowHeaders", text(_header_name)),
        expose_headers=r.get_list("exposeHeaders", text(_header_name)),
        max_age=r.get("maxAge", _max_age),
        allow_credentials=r.get("allowCredentials", boolean),
        unmatched_preflights=r.get("unmatchedPreflights", _UNMATCHED, "FORWARD"),
    )
