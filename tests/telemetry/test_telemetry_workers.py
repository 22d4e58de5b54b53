"""Several worker processes, one view: real forks, then one render in the parent."""

import multiprocessing
import os
import shutil

import pytest

from pymesh.telemetry.metrics import MetricsContext, outbound_labels, setup_metrics

fork = multiprocessing.get_context("fork")


def requests_total(ctx) -> float:
    lines = [l for l in ctx.render_prometheus().decode().splitlines()
             if l.startswith("istio_requests_total{")]
    return sum(float(l.rsplit(" ", 1)[1]) for l in lines)


def stat(ctx, name) -> int:
    for line in ctx.render_stats().decode().splitlines():
        key, value = line.rsplit(": ", 1)
        if key.endswith("." + name):
            return int(value)
    raise KeyError(name)


def worker(ctx, labels, cluster_name, n):
    rec = ctx.http(labels)  # the parent's recorder, inherited through fork
    for _ in range(n):
        rec.record(200, "-", 1.0, 10, 10)
    stats = ctx.cluster_stats(cluster_name)
    stats["upstream_rq_total"] += n
    ctx.listener_stats("ingress")["downstream_cx_active"] += 1
    ctx.close()  # in a worker: publish the last values


@pytest.fixture
def ctx():
    ctx = setup_metrics(2)
    yield ctx
    ctx.close()
    assert not os.path.exists(ctx.directory)


def run_workers(ctx, labels, cluster_name, counts):
    procs = [fork.Process(target=worker, args=(ctx, labels, cluster_name, n)) for n in counts]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    return procs


def test_forked_workers_sum_into_one_view(ctx, identity, cluster, endpoint):
    labels = outbound_labels(identity, cluster, endpoint, "http")
    ctx.http(labels).record(200, "-", 1.0, 10, 10)  # the parent's own count, before forking
    procs = run_workers(ctx, labels, cluster.name, [10, 20])

    # Children zeroed what they inherited: 1 (parent, live) + 10 + 20, not 1 + 11 + 21.
    assert requests_total(ctx) == 31
    assert stat(ctx, "upstream_rq_total") == 30
    assert stat(ctx, "downstream_cx_active") == 2

    for p in procs:
        ctx.worker_exit(p.pid)
    assert requests_total(ctx) == 31  # counters of exited workers stay in the totals
    assert stat(ctx, "upstream_rq_total") == 30
    assert stat(ctx, "downstream_cx_active") == 0  # their gauges went with them
    assert sorted(os.listdir(ctx.directory)) == ["dead.bin"]


def test_folded_worker_file_is_not_counted_twice(ctx, identity, cluster, endpoint, tmp_path):
    labels = outbound_labels(identity, cluster, endpoint, "http")
    [p] = run_workers(ctx, labels, cluster.name, [7])
    [name] = os.listdir(ctx.directory)
    shutil.copy(os.path.join(ctx.directory, name), tmp_path / name)
    ctx.worker_exit(p.pid)
    # A reader that globbed the worker file just before the fold still sees it: skipped.
    shutil.copy(tmp_path / name, os.path.join(ctx.directory, name))
    assert requests_total(ctx) == 7


def test_renderer_uses_its_live_values_not_its_own_file(ctx, identity, cluster, endpoint):
    rec = ctx.http(outbound_labels(identity, cluster, endpoint, "http"))
    rec.record(200, "-", 1.0, 10, 10)
    ctx.flush()
    rec.record(200, "-", 1.0, 10, 10)
    assert requests_total(ctx) == 2


def test_stats_render_and_names(identity):
    ctx = MetricsContext()
    cluster_stats = ctx.cluster_stats("outbound|9080||reviews.default.svc.cluster.local")
    cluster_stats["upstream_rq_retry"] += 3
    ctx.listener_stats("0.0.0.0_15001")["downstream_cx_total"] += 1
    assert ctx.cluster_stats("outbound|9080||reviews.default.svc.cluster.local") is cluster_stats
    lines = ctx.render_stats().decode().splitlines()
    assert "cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_retry: 3" in lines
    assert "cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_cx_total: 0" in lines
    assert "listener.0.0.0.0_15001.downstream_cx_total: 1" in lines
    assert lines == sorted(lines)
    with pytest.raises(KeyError):
        cluster_stats["upstream_rq_retries"] += 1  # misspelt: no new stat appears
