"""Envoy's response flags, defined once: access logs, metrics and local replies all use these.

Keeping Envoy's short codes means dashboards and runbooks written for Istio read pymesh's access
log unchanged. Several flags on one request are joined with "," in the order of `ORDER` (Envoy's).
"""

from __future__ import annotations

NONE = "-"  # no flag
UH = "UH"  # no healthy upstream endpoint
UT = "UT"  # upstream request (per-try or route) timeout
UR = "UR"  # upstream reset the stream (HTTP/2 RST_STREAM, e.g. REFUSED_STREAM)
UF = "UF"  # upstream connection failure: the request never left the proxy
UC = "UC"  # upstream connection terminated after the request was sent
UO = "UO"  # upstream overflow: the cluster's circuit breaker is full
NR = "NR"  # no route configured
DI = "DI"  # the request was delayed by fault injection
FI = "FI"  # the request was aborted by fault injection
RL = "RL"  # the request was refused by the local rate limit (429)
URX = "URX"  # retry limit reached while the last attempt was still retryable
DC = "DC"  # downstream connection terminated
DPE = "DPE"  # downstream protocol error: malformed or oversized request
UPE = "UPE"  # upstream protocol error: the upstream's response was not valid HTTP
SI = "SI"  # stream idle timeout: nothing moved on the request for too long
# pymesh's own: a Python filter (pymesh.filters) with failStrategy FAIL_CLOSE raised (500). Envoy
# has no flag for a failed Wasm plugin (its response code details say wasm_fail_stream).
PFE = "PFE"

ORDER = (UH, UT, UR, UF, UC, UO, NR, DI, FI, RL, DC, URX, SI, DPE, UPE, PFE)  # Envoy's ResponseFlag bit order, then ours


def join(*flags: str) -> str:
    """Combine flags in Envoy's order ("-" when none), e.g. join(URX, UF) == "UF,URX"; an
    argument may itself be a joined list, so flags accumulate: join("UF,URX", DC)."""
    present = {f for text in flags if text for f in text.split(",") if f != NONE}
    return ",".join(f for f in ORDER if f in present) or NONE
