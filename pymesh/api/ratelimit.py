"""LocalRateLimit (apiVersion pymesh.dev/v1alpha1): Envoy's local rate limit token bucket per
route or per workload, which Istio offers only through EnvoyFilter (istio/api#1357). Validated as
Envoy validates its token_bucket: maxTokens >= 1, tokensPerFill >= 1 (default 1), fillInterval
>= 50ms (Envoy's floor); a rule may key its bucket by a request header or the source address.

    spec:
      workloadSelector: {labels: {app: ratings}}   # absent: every workload in the namespace
      rules:
      - route: ratings-v1        # an HTTPRoute name; absent: every route
        direction: INBOUND       # INBOUND | OUTBOUND; absent: both
        tokenBucket: {maxTokens: 10, tokensPerFill: 10, fillInterval: 1s}
        key: {header: x-user}    # or {sourceIp: true}; absent: one bucket for the rule
"""

from __future__ import annotations

from pymesh.api import checks, common, model, shapes
from pymesh.api.reader import Reader, boolean, choice, duration, integer, message, text

_DIRECTION = choice("direction", ("INBOUND", "OUTBOUND"))


def local_rate_limit(metadata: model.Metadata, r: Reader) -> model.LocalRateLimit:
    return model.LocalRateLimit(
        metadata=metadata,
        workload_selector=common.workload_selector(r),
        rules=r.get_list("rules", message(shapes.RATE_LIMIT_RULE, _rule), required=True),
    )


FILL_INTERVAL = duration(positive=True, at_least=(0.05, "must be at least 50ms (Envoy's minimum fill interval)"))


def _bucket(r: Reader) -> tuple[int, int, float]:
    return (r.get("maxTokens", integer(1), 1, required=True), r.get("tokensPerFill", integer(1), 1),
            r.get("fillInterval", FILL_INTERVAL, 1.0, required=True))


def _key(r: Reader) -> tuple[str, bool]:
    kind = r.one_of(("header", "sourceIp"), required=True)
    if kind == "sourceIp" and r.get("sourceIp", boolean) is False:
        r.error("sourceIp", "sourceIp: false keys nothing; leave key out for one bucket")
    return r.get("header", text(checks.match_header_name), "").lower(), kind == "sourceIp"


def _rule(r: Reader) -> model.RateLimitRule:
    max_tokens, per_fill, interval = r.get("tokenBucket", message(shapes.TOKEN_BUCKET, _bucket), (1, 1, 1.0),
                                           required=True)
    header, source_ip = r.get("key", message(shapes.RATE_LIMIT_KEY, _key), ("", False))
    return model.RateLimitRule(
        max_tokens=max_tokens, tokens_per_fill=per_fill, fill_interval=interval,
        route=r.get("route", text(checks.not_empty), ""), direction=r.get("direction", _DIRECTION, ""),
        key_header=header, key_source_ip=source_ip,
    )
