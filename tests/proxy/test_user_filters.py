"""Python filters (pymesh.filters) through a real `pymesh proxy`, over HTTP/1.1 and h2c: each hook,
header changes both ways, local replies, pause/resume from a task, body changes, failures under
each failStrategy, a hook that blocks the loop, ordering by phase and priority."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy_harness import Reply, curl, free_port, http_mesh, samples, to_subset

pytestmark = pytest.mark.timeout(90)
HERE = Path(__file__).parent
SAMPLES = "user_filter_samples"


def spec(name: str, cls: str, config: dict | None = None, phase: str | None = None, priority: int | None = None,
         fail_strategy: str | None = None, match: list[dict] | None = None) -> dict:
    """A PythonFilter resource for the samples in user_filter_samples.py."""
    body = {"module": f"{SAMPLES}:{cls}"}
    for key, value in (("pluginConfig", config), ("phase", phase), ("priority", priority),
                       ("failStrategy", fail_strategy)):
        if value is not None:
            body[key] = value
    if match is not None:
        body["match"] = [{**m, "ports": [{"number": p} for p in m.get("ports", ())]} for m in match]
    return {"apiVersion": "pymesh.dev/v1alpha1", "kind": "PythonFilter",
            "metadata": {"name": name, "namespace": "default"}, "spec": body}


def echo(request):
    """The request as the upstream saw it: body echoed, a header of ours to see removed."""
    return Reply(200, [("x-upstream", "v1"), ("x-seen-path", request.target)], request.body or b"v1 says hi\n")


@pytest.fixture
def mesh(upstreams, proxies):
    """mesh(*PythonFilters, handler=echo) -> (upstream, port, proxy): the filters' module is
    importable by the proxy process (tests/proxy on its PYTHONPATH)."""
    def start(*filters: dict, handler=echo, **options):
        up = upstreams("v1", handler)
        port = free_port()
        resources = http_mesh(port, {"v1": up}, [{"name": "main", "route": [to_subset("v1")]}]) + list(filters)
        proxy = proxies(resources, env={"PYTHONPATH": f"{HERE}:{HERE.parent.parent}"}, **options)
        return up, port, proxy

    return start


def test_headers_change_both_ways_and_the_filter_reads_route_cluster_and_connection(mesh, via):
    up, port, proxy = mesh(spec("headers", "Headers", config={"tag": "t1"}))
    result = curl(port, "/a?q=1", *via, "-H", "x-drop-me: 1", "-H", "x-new-path: /b?z=2")
    assert result.status == 200, result
    seen = up.wait_requests(1)[0]
    route, cluster, direction = seen.header("x-filter-route").split(";")
    assert route == "main" and cluster.startswith("outbound|") and "v1" in cluster and direction == "outbound"
    http_version = "2" if "--http2-prior-knowledge" in via else "1.1"
    assert seen.header("x-filter-peer") == f"127.0.0.1;False;{http_version}"
    assert seen.header("x-drop-me") is None and seen.header("x-filter-config") == "t1"
    assert seen.target == "/b?z=2"
    assert result.header("x-filter-response") == "200|/b?z=2"
    assert result.header("x-upstream") is None and result.header("x-seen-path") == "/b?z=2"
    proxy.wait_metric(lambda s: any(x.labels == {"filter": "default/headers"} and x.value >= 1 for x in s),
                      "pymesh_filter_seen_total")


def test_a_local_reply_answers_without_the_upstream(mesh, via):
    up, port, proxy = mesh(spec("deny", "Deny"))
    denied = curl(port, "/", *via, "-H", "x-deny: 1")
    assert denied.status == 418 and denied.body == b"denied by filter\n"
    assert denied.header("x-denied-by") == "default/deny"
    assert curl(port, "/", *via).status == 200
    assert up.count() == 1


def test_pause_then_resume_or_reply_from_a_task(mesh, via):
    up, port, proxy = mesh(spec("pause", "Pause"), spec("headers", "Headers"))
    resumed = curl(port, "/go", *via)
    assert resumed.status == 200 and up.wait_requests(1)[0].header("x-decided") == "task"
    # the chain went on after the paused filter: the next filter ran
    assert up.wait_requests(1)[0].header("x-filter-route") is not None
    refused = curl(port, "/no", *via, "-H", "x-decision: no")
    assert refused.status == 403 and refused.body == b"no by task\n" and refused.header("x-decided") == "task"
    assert up.count() == 1


@pytest.mark.parametrize("size", [5, 300_000])
def test_body_data_changes_both_ways(mesh, via, size, tmp_path):
    up, port, proxy = mesh(spec("body", "Body"))
    body = (b"abc" * (size // 3 + 1))[:size]
    (tmp_path / "body").write_bytes(body)
    result = curl(port, "/echo", *via, "--data-binary", f"@{tmp_path / 'body'}", "-H",
                  "content-type: application/octet-stream")
    assert result.status == 200, result
    seen = up.wait_requests(1)[0]
    assert seen.body_len == size and seen.body[:1000] == body.upper()[:1000]
    assert result.body == body.upper() + b"[filtered]"


def test_end_hooks_and_the_filters_own_metrics(mesh, via):
    up, port, proxy = mesh(spec("ends", "Ends"))
    assert curl(port, "/", *via, "--data-binary", "x" * 50).status == 200
    assert curl(port, "/", *via).status == 200

    def counted(name, value):
        return lambda s: any(x.labels == {"filter": "default/ends"} and x.value == value for x in s)

    proxy.wait_metric(counted("request_ends", 2), "pymesh_filter_request_ends_total")
    proxy.wait_metric(counted("response_ends", 2), "pymesh_filter_response_ends_total")
    text = proxy.prometheus()
    buckets = {s.labels["le"]: s.value for s in samples(text, "pymesh_filter_request_bytes_bucket")}
    assert buckets == {"10": 1, "1000": 2, "+Inf": 2}


@pytest.mark.parametrize("hook", ["on_request_head", "on_request_data", "on_response_head"])
def test_fail_close_answers_500_pfe_and_the_next_request_is_untouched(mesh, via, hook):
    up, port, proxy = mesh(spec("raises", "Raises", config={"hook": hook}, fail_strategy="FAIL_CLOSE"))
    # a head hook fails before the body: sent without one, so that an HTTP/2 client is not
    # answered while it still sends (curl then sometimes reports the stream's reset, whoever answers)
    body = ("--data-binary", "payload") if hook == "on_request_data" else ()
    failed = curl(port, "/", *via, "-H", "x-raise: 1", *body)
    assert failed.status == 500 and failed.body == b"python filter failed"
    entry = proxy.wait_log(lambda e: e.get("response_code") == 500)
    assert entry["response_flags"] == "PFE"
    ok = curl(port, "/", *via, "--data-binary", "payload")
    assert ok.status == 200 and ok.body == b"payload"
    errors = proxy.wait_metric(lambda s: [x for x in s if x.value >= 1], "pymesh_python_filter_errors_total")
    assert errors[0].labels == {"filter": "default/raises", "hook": hook, "fail_strategy": "FAIL_CLOSE"}
    assert "boom in" in proxy.stderr() and "default/raises" in proxy.stderr()


def test_fail_close_after_the_response_started_resets_the_client(mesh, via):
    up, port, proxy = mesh(spec("raises", "Raises", config={"hook": "on_response_data"}),
                           handler=lambda r: Reply(200, [], b"z" * 100_000))
    failed = curl(port, "/", *via, "-H", "x-raise: 1")
    assert failed.returncode != 0 or failed.status == 500  # a reset, never a complete-looking response
    assert len(failed.body) < 100_000
    proxy.wait_log(lambda e: e.get("response_flags") == "PFE")
    assert curl(port, "/", *via).body == b"z" * 100_000


@pytest.mark.parametrize("hook", ["on_request_head", "on_response_head", "on_response_data"])
def test_fail_open_continues_and_counts(mesh, via, hook):
    up, port, proxy = mesh(spec("raises", "Raises", config={"hook": hook}, fail_strategy="FAIL_OPEN"))
    result = curl(port, "/", *via, "-H", "x-raise: 1")
    assert result.status == 200 and result.body == b"v1 says hi\n"
    errors = proxy.wait_metric(lambda s: [x for x in s if x.value >= 1], "pymesh_python_filter_errors_total")
    assert errors[0].labels["fail_strategy"] == "FAIL_OPEN"


def test_a_filter_that_fails_its_setup_fails_its_requests_closed(mesh, via):
    up, port, proxy = mesh(spec("bad", "FailsSetup"))
    assert curl(port, "/", *via).status == 500
    assert "bad pluginConfig" in proxy.stderr()
    assert up.count() == 0


def test_a_hook_that_blocks_the_loop_is_reported_by_name(mesh, via):
    up, port, proxy = mesh(spec("slow", "Blocks", config={"ms": 200}))
    assert curl(port, "/", *via).status == 200
    assert "pymesh_python_filter_loop_blocked_total" not in proxy.prometheus()
    assert curl(port, "/", *via, "-H", "x-block: 1").status == 200
    blocked = proxy.wait_metric(lambda s: [x for x in s if x.value == 1], "pymesh_python_filter_loop_blocked_total")
    assert blocked[0].labels == {"filter": "default/slow", "hook": "on_request_head"}
    assert "default/slow on_request_head held the event loop" in proxy.stderr()


def test_the_blocking_budget_is_configurable(mesh):
    up, port, proxy = mesh(spec("slow", "Blocks", config={"ms": 200}), extra_args=["--filter-budget-ms", "2000"])
    assert curl(port, "/", "-H", "x-block: 1").status == 200
    proxy.wait_log(lambda e: e.get("response_code") == 200)
    assert "pymesh_python_filter_loop_blocked_total" not in proxy.prometheus()
    assert "held the event loop" not in proxy.stderr()


def test_order_by_phase_then_priority_and_responses_in_reverse(mesh, via):
    up, port, proxy = mesh(
        spec("u", "Order", config={"tag": "unspecified"}),
        spec("s", "Order", config={"tag": "stats"}, phase="STATS"),
        spec("z-low", "Order", config={"tag": "authz-low"}, phase="AUTHZ", priority=1),
        spec("n", "Order", config={"tag": "authn"}, phase="AUTHN"),
        spec("a-high", "Order", config={"tag": "authz-high"}, phase="AUTHZ", priority=10),
    )
    result = curl(port, "/", *via)
    order = ["authn", "authz-high", "authz-low", "stats", "unspecified"]
    assert up.wait_requests(1)[0].header_all("x-order") == order
    assert result.header_all("x-order-response") == order[::-1]


def test_match_ports_and_mode_select_the_traffic(mesh, via):
    up, port, proxy = mesh(spec("other-port", "Deny", match=[{"ports": [1]}]),
                           spec("inbound-only", "Deny", match=[{"mode": "SERVER"}]))
    assert curl(port, "/", *via, "-H", "x-deny: 1").status == 200
