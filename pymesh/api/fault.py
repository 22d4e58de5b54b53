"""VirtualService `http[].fault` (Istio's HTTPFaultInjection), validated as Istio's webhook does:
a fault needs a delay or an abort, a delay needs fixedDelay (>= 1ms), an abort exactly one of
httpStatus (200-599, what Envoy accepts) or grpcStatus (a status name), and percentages lie in
0..100. `percentage` is unset: every request (Istio's documented default); the deprecated integer
`percent` is read when `percentage` is absent, as Istio's translation does."""

from __future__ import annotations

from pymesh.api import common, model, shapes
from pymesh.api.reader import Reader, choice, duration, integer, message

# gRPC's status names (Istio's grpc.SupportedGRPCStatus) -> codes.
GRPC_STATUS = {
    name: code
    for code, name in enumerate(
        "OK CANCELLED UNKNOWN INVALID_ARGUMENT DEADLINE_EXCEEDED NOT_FOUND ALREADY_EXISTS "
        "PERMISSION_DENIED RESOURCE_EXHAUSTED FAILED_PRECONDITION ABORTED OUT_OF_RANGE "
        "UNIMPLEMENTED INTERNAL UNAVAILABLE DATA_LOSS UNAUTHENTICATED".split()
    )
}
_GRPC_STATUS_NAME = choice("grpcStatus", tuple(GRPC_STATUS))
_ABORT_KINDS = ("httpStatus", "grpcStatus", "http2Error")


def fault(r: Reader) -> model.HTTPFaultInjection:
    if not (r.has("delay") or r.has("abort")):
        r.error_here("HTTP fault injection must have an abort and/or a delay")
    return model.HTTPFaultInjection(
        delay=r.get("delay", message(shapes.FAULT_DELAY, _delay)),
        abort=r.get("abort", message(shapes.FAULT_ABORT, _abort)),
    )


def _percentage(r: Reader) -> float:
    if r.has("percentage"):
        return r.get("percentage", common.PERCENT, 0.0)
    if r.has("percent"):
        return float(r.get("percent", integer(0, 100), 0))
    return 100.0


FIXED_DELAY = duration(positive=True, at_least=(0.001, "must be at least 1ms"))


def _delay(r: Reader) -> model.FaultDelay:
    return model.FaultDelay(
        fixed_delay=r.get("fixedDelay", FIXED_DELAY, 0.0, required=True),
        percentage=_percentage(r),
    )


def _abort(r: Reader) -> model.FaultAbort:
    kind = r.one_of(_ABORT_KINDS[:2], required=not r.has("http2Error"))
    grpc_name = r.get("grpcStatus", _GRPC_STATUS_NAME) if kind == "grpcStatus" else None
    return model.FaultAbort(
        http_status=r.get("httpStatus", integer(200, 599)) if kind == "httpStatus" else None,
        grpc_status=GRPC_STATUS.get(grpc_name) if grpc_name else None,
        percentage=_percentage(r),
    )
