"""pymesh's LocalRateLimit resource: the example loads, and bad values are named by field path."""

from __future__ import annotations

from pathlib import Path

from pymesh.api.load import load_text

EXAMPLE = Path(__file__).parents[2] / "examples" / "ratelimit" / "local-rate-limit.yaml"
HEAD = """\
apiVersion: pymesh.dev/v1alpha1
kind: LocalRateLimit
metadata: {name: rl, namespace: default}
spec:
"""


def errors(spec: str) -> list[str]:
    result = load_text(HEAD + spec, "rl.yaml")
    return [f"{e.line} {e.path}: {e.message}" for e in result.errors]


def test_the_example_loads():
    result = load_text(EXAMPLE.read_text(), "example.yaml")
    assert result.ok, result.errors
    (limit,) = result.config.local_rate_limits
    assert [r.max_tokens for r in limit.rules] == [10, 100]


def test_bad_values_are_named():
    assert errors("""\
  rules:
  - tokenBucket: {maxTokens: 0, tokensPerFill: 1, fillInterval: 10ms}
""") == [
        "6 spec.rules[0].tokenBucket.maxTokens: must be >= 1, got 0",
        "6 spec.rules[0].tokenBucket.fillInterval: must be at least 50ms (Envoy's minimum fill interval)",
    ]


def test_a_key_is_a_header_or_the_source_not_both_and_rules_are_required():
    both = errors("""\
  rules:
  - tokenBucket: {maxTokens: 5, fillInterval: 1s}
    key: {header: x-user, sourceIp: true}
""")
    assert len(both) == 1 and both[0].startswith("7 spec.rules[0].key")
    assert errors("  workloadSelector: {labels: {app: a}}\n") == ["4 spec.rules: required field is missing"]
