"""VirtualService `http[].mirror`, `mirrorPercentage`, the deprecated `mirrorPercent` (which
Istio's CRD also accepts as `mirror_percent`) and
`mirrors[]` (Istio's HTTPMirrorPolicy), read into one list of mirror policies.

Istio's rules: percentages lie in 0..100; `mirrorPercentage` wins over `mirrorPercent` when both
are given; unset means every request (100%) and an explicit 0 means none (Istio then sends Envoy
no mirror policy at all). `mirror` and `mirrors` may both be set: both apply, `mirror` first.
"""

from __future__ import annotations

from pymesh.api import common, model, shapes
from pymesh.api.reader import Reader, integer, message


def mirrors(r: Reader) -> tuple[model.HTTPMirrorPolicy, ...]:
    """The route's mirror policies, in the order Istio hands them to Envoy."""
    first = r.get("mirror", common.DESTINATION)
    percentage = _route_percentage(r)
    policies = r.get_list("mirrors", message(shapes.HTTP_MIRROR_POLICY, _policy))
    return ((model.HTTPMirrorPolicy(first, percentage),) if first is not None else ()) + policies


def _route_percentage(r: Reader) -> float:
    """Both are validated (as Istio does); without `mirror` they mean nothing, as in Istio."""
    key = r.spelling("mirrorPercent", "mirror_percent")
    deprecated = r.get(key, integer(0, 100))
    if r.has(key):
        r.warn(key, 'using deprecated setting "mirrorPercent", use "mirrorPercentage" instead')
    if r.has("mirrorPercentage"):
        return r.get("mirrorPercentage", common.PERCENT, 0.0)
    return 100.0 if deprecated is None else float(deprecated)


def _policy(r: Reader) -> model.HTTPMirrorPolicy:
    return model.HTTPMirrorPolicy(
        destination=r.get("destination", common.DESTINATION, required=True),
        percentage=r.get("percentage", common.PERCENT, 100.0),
    )
