"""VirtualService `http[].fault` (Istio's HTTPFaultInjection), validated as Istio's webhook does:
a fault needs a delay or an abort, a delay needs fixedDelay (>= 1ms), an abort one of httpStatus
(200-599, what Envoy accepts) or grpcStatus (a status name) (without either Istio only warns and
sends no abort), and percentages are 0 or lie in 0.0001..100. `percentage` is unset: every request (Istio's documented default); the deprecated integer
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
    abort = r.get("abort", message(shapes.FAULT_ABORT, _abort))
    if abort is not None and abort.http_status is None and abort.grpc_status is None:
        abort = None  # Istio's translation sends Envoy no abort without an error type
    return model.HTTPFaultInjection(delay=r.get("delay", message(shapes.FAULT_DELAY, _delay)), abort=abort)


def _fault_percentage(r: Reader) -> float:
    """Istio's validatePercentage: 0, or between 0.0001 and 100."""
    value = r.get("value", common.PERCENT_VALUE, 0.0)
    if 0 < value < 0.0001:
        r.error("value", f"percentage {value:g} is neither 0.0, nor in range [0.0001, 100.0]")
    return value


_FAULT_PERCENT = message(shapes.PERCENT, _fault_percentage)


def _percentage(r: Reader) -> float:
    if r.has("percentage"):
        return r.get("percentage", _FAULT_PERCENT, 0.0)
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
    kind = r.one_of(_ABORT_KINDS[:2], required=False)
    if kind is None and not r.has("http2Error"):
        r.warn_here("abort configured, but error type not set (no abort is injected)")
    grpc_name = r.get("grpcStatus", _GRPC_STATUS_NAME) if kind == "grpcStatus" else None
    return model.FaultAbort(
        http_status=r.get("httpStatus", integer(200, 599)) if kind == "httpStatus" else None,
        grpc_status=GRPC_STATUS.get(grpc_name) if grpc_name else None,
        percentage=_percentage(r),
    )
