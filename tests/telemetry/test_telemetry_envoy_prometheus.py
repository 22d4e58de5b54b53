"""Envoy's cluster and listener stats on /stats/prometheus, read back with prometheus_client's
parser: names, the cluster_name / listener_address / response_code_class labels, and types.
(The parser reads a counter sample `x` as `x_total`; the text keeps Envoy's own names.)"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pymesh.telemetry.envoy_prometheus import listener_address
from pymesh.telemetry.metrics import MetricsContext

CLUSTER = "outbound|9080||reviews.default.svc.cluster.local"


def parsed(ctx: MetricsContext) -> dict:
    """{(sample name as parsed, labels as a sorted tuple): (type, value)} of the envoy_ series."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): (family.type, s.value)
        for family in text_string_to_metric_families(ctx.render_prometheus().decode())
        for s in family.samples
        if s.name.startswith("envoy_")
    }


def test_cluster_stats_are_envoys_families_with_the_cluster_name_as_a_label():
    ctx = MetricsContext()
    cluster = ctx.cluster_stats(CLUSTER)
    cluster["upstream_rq_pending_overflow"] += 3
    cluster["upstream_rq_total"] += 6
    cluster["upstream_rq_2xx"] += 5
    cluster["upstream_rq_5xx"] += 1
    cluster["upstream_cx_active"] += 2
    ctx.outlier_stats(CLUSTER)["outlier_detection.ejections_active"] += 1
    got = parsed(ctx)
    name = (("cluster_name", CLUSTER),)
    assert got["envoy_cluster_upstream_rq_pending_overflow_total", name] == ("counter", 3)
    assert got["envoy_cluster_upstream_rq_total", name] == ("counter", 6)
    assert got["envoy_cluster_upstream_cx_active", name] == ("gauge", 2)
    assert got["envoy_cluster_outlier_detection_ejections_active", name] == ("gauge", 1)
    assert got["envoy_cluster_upstream_cx_overflow_total", name] == ("counter", 0)  # declared: there at zero
    by_class = {dict(labels).get("response_code_class"): value for (sample, labels), (_, value) in got.items()
                if sample == "envoy_cluster_upstream_rq_total"}
    assert by_class == {None: 6, "1xx": 0, "2xx": 5, "3xx": 0, "4xx": 0, "5xx": 1}
    text = ctx.render_prometheus().decode()
    assert "# TYPE envoy_cluster_upstream_rq_pending_overflow counter\n" in text
    assert f'envoy_cluster_upstream_rq_pending_overflow{{cluster_name="{CLUSTER}"}} 3\n' in text
    assert f'envoy_cluster_upstream_rq{{response_code_class="2xx",cluster_name="{CLUSTER}"}} 5\n' in text


def test_listener_stats_carry_envoys_listener_address():
    ctx = MetricsContext()
    ctx.listener_stats("egress|127.0.0.1|9080")["downstream_cx_total"] += 4
    ctx.listener_stats("egress|127.0.0.1|9080")["downstream_rq_4xx"] += 1
    ctx.listener_stats("ingress|0.0.0.0|8000")["downstream_cx_active"] += 1
    got = parsed(ctx)
    egress, ingress = (("listener_address", "127.0.0.1_9080"),), (("listener_address", "0.0.0.0_8000"),)
    assert got["envoy_listener_downstream_cx_total", egress] == ("counter", 4)
    assert got["envoy_listener_downstream_cx_total", ingress] == ("counter", 0)
    assert got["envoy_listener_downstream_cx_active", ingress] == ("gauge", 1)
    assert got["envoy_listener_downstream_rq_total", (egress[0], ("response_code_class", "4xx"))] == ("counter", 1)


def test_only_cluster_and_listener_scopes_are_exported():
    ctx = MetricsContext()
    ctx.filter_stats("egress|127.0.0.1|9080", "fault")["aborts_injected"] += 1
    ctx.config_reload_stats()["update_success"] += 1
    assert parsed(ctx) == {}


def test_listener_address():
    assert listener_address("outbound|0.0.0.0|9080") == "0.0.0.0_9080"
    assert listener_address("inbound|8000") == "inbound|8000"


def test_rbac_stats_carry_istios_dry_run_tags():
    """As Istio's authz-dry-run task reads them: the inbound stat prefix in the family name, the
    dry-run action and result as labels."""
    ctx = MetricsContext()
    rbac = ctx.filter_stats("ingress|0.0.0.0|80", "rbac")
    rbac["istio_dry_run_deny_shadow_denied"] += 20
    rbac["denied"] += 2
    ctx.filter_stats("inbound|9080", "rbac")["allowed"] += 1
    got = parsed(ctx)
    family = "envoy_http_inbound_0_0_0_0_80_rbac"
    assert got[family + "_total", (("authz_dry_run_action", "deny"), ("authz_dry_run_result", "denied"))] == (
        "counter", 20)
    assert got[family + "_total", (("authz_dry_run_action", "allow"), ("authz_dry_run_result", "allowed"))] == (
        "counter", 0)
    assert got[family + "_denied_total", ()] == ("counter", 2)
    assert got["envoy_http_inbound_0_0_0_0_9080_rbac_allowed_total", ()] == ("counter", 1)
