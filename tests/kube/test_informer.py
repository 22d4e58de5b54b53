"""The informer (pymesh.control.kube.informer) against the STAND-IN API server of
tests/kube/apiserver.py (no real API server runs here): list then watch, bookmarks, a dropped
watch resumed without losing or repeating an update, 410 Gone relisting, backoff, a resource type
that is not served."""

import asyncio
import contextlib

from kube_async import Changes, client_for, run
from pymesh.control.kube.informer import Backoff, Informer
from pymesh.control.metrics import ControlMetrics
from pymesh.kube.resources import ResourceType, SERVICES

FAST = Backoff(initial=0.05, maximum=0.2)
VIRTUAL_SERVICES = ResourceType("networking.istio.io", "v1", "VirtualService", "virtualservices")


def service(name: str, namespace: str = "default", **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"ports": [{"name": "http", "port": 80}]}}


def names(informer: Informer) -> dict[str, dict]:
    return {o["metadata"]["name"]: o.get("metadata", {}).get("labels") or {} for o in informer.objects()}


@contextlib.asynccontextmanager
async def informing(apiserver, resource=SERVICES, **options):
    """A started informer on the stand-in (its client, changes and metrics), stopped after."""
    client = await client_for(apiserver)
    changes = Changes()
    metrics = ControlMetrics()
    informer = Informer(client, resource, changes, metrics=metrics, backoff=FAST, **options)
    informer.start()
    try:
        yield changes, informer, metrics
    finally:
        await informer.stop()
        await client.close()


async def cut_watch(apiserver, changes: Changes, informer: Informer) -> None:
    """Once synced and watching: watches paused, the open one cut, the informer asking again."""
    await asyncio.wait_for(informer.synced.wait(), 10)
    await changes.until(lambda: apiserver.open_watches(SERVICES), "the watch")
    apiserver.pause_watches()
    requests = apiserver.watch_requests
    assert apiserver.drop_watches() == 1
    await changes.until(lambda: apiserver.watch_requests > requests, "the informer to watch again")


def counted(metrics: ControlMetrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_lists_in_pages_then_watches_changes(apiserver):
    """Stand-in API server. The first list comes in pages (limit) and sets synced; later creates,
    updates and deletes reach the cache through the watch, each calling on_change once. The
    cache holds no managedFields."""
    for i in range(7):
        apiserver.apply({**service(f"s{i}"), "metadata": {**service(f"s{i}")["metadata"],
                                                          "managedFields": [{"manager": "kubectl"}]}})

    async def body():
        async with informing(apiserver, page_size=3) as (changes, informer, metrics):
            await asyncio.wait_for(informer.synced.wait(), 10)
            assert set(names(informer)) == {f"s{i}" for i in range(7)}
            assert not any("managedFields" in o["metadata"] for o in informer.objects())
            assert sum(1 for m, t in apiserver.requests if m == "GET" and "limit=3" in t) == 3
            before = changes.count
            apiserver.apply(service("s1", team="a"))
            apiserver.delete(SERVICES, "s2", "default")
            apiserver.apply(service("new"))
            await changes.until(lambda: names(informer).get("s1") == {"team": "a"} and "s2" not in names(informer)
                                and "new" in names(informer), "the three changes")
            assert changes.count - before == 3
            assert counted(metrics, "pymesh_control_kube_events_total", resource="services", type="MODIFIED") == 1
            assert counted(metrics, "pymesh_control_kube_relists_total", resource="services") == 1
    run(body())


def test_bookmark_moves_the_resource_version_only(apiserver):
    """Stand-in API server. A BOOKMARK changes nothing in the cache (no on_change) but the
    resourceVersion the next watch resumes from."""
    apiserver.apply(service("a"))

    async def body():
        async with informing(apiserver) as (changes, informer, _):
            await asyncio.wait_for(informer.synced.wait(), 10)
            await changes.until(lambda: apiserver.open_watches(SERVICES), "the watch")
            apiserver.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}})
            seen, count = informer.resource_version, changes.count
            apiserver.bookmark()
            await changes.until(lambda: informer.resource_version != seen, "the bookmark")
            assert informer.resource_version == str(apiserver.revision)
            assert changes.count == count
    run(body())


def test_dropped_watch_resumes_without_losing_or_repeating_updates(apiserver):
    """Stand-in API server. The watch is cut mid-stream; while the informer cannot watch again,
    objects change. On reconnect it resumes from the last resourceVersion it saw (no relist), and
    every change made meanwhile arrives, each applied once."""
    apiserver.apply(service("a"))
    apiserver.apply(service("b"))

    async def body():
        async with informing(apiserver) as (changes, informer, metrics):
            await asyncio.wait_for(informer.synced.wait(), 10)
            apiserver.apply(service("a", v="1"))
            await changes.until(lambda: names(informer)["a"] == {"v": "1"}, "the first update")
            await cut_watch(apiserver, changes, informer)
            count = changes.count
            apiserver.apply(service("a", v="2"))
            apiserver.delete(SERVICES, "b", "default")
            apiserver.apply(service("c"))
            apiserver.resume_watches()
            await changes.until(lambda: names(informer) == {"a": {"v": "2"}, "c": {}}, "the changes made while down")
            assert changes.count - count == 3
            assert counted(metrics, "pymesh_control_kube_relists_total", resource="services") == 1
            assert counted(metrics, "pymesh_control_kube_watch_restarts_total", resource="services", reason="error") >= 1
    run(body())


def gone_survived(apiserver, gone_as: str) -> None:
    apiserver.gone_as = gone_as
    apiserver.apply(service("a"))
    apiserver.apply(service("b"))

    async def body():
        async with informing(apiserver) as (changes, informer, metrics):
            await cut_watch(apiserver, changes, informer)
            apiserver.delete(SERVICES, "b", "default")
            apiserver.apply(service("a", v="2"))
            apiserver.apply(service("c"))
            apiserver.compact()  # the informer's resourceVersion is gone from the history
            apiserver.resume_watches()
            await changes.until(lambda: names(informer) == {"a": {"v": "2"}, "c": {}}, "the relisted state")
            assert counted(metrics, "pymesh_control_kube_events_total", resource="services", type="DELETED") == 1
            assert counted(metrics, "pymesh_control_kube_relists_total", resource="services") == 2
            assert counted(metrics, "pymesh_control_kube_watch_restarts_total", resource="services", reason="gone") == 1
            apiserver.apply(service("d"))  # and the watch after the relist works
            await changes.until(lambda: "d" in names(informer), "a change after the relist")
    run(body())


def test_gone_as_an_error_event_relists(apiserver):
    """Stand-in API server, answering a compacted resourceVersion as the real watch cache does:
    HTTP 200 then an ERROR event with a 410 Status. The informer relists and replaces its cache:
    what vanished meanwhile is gone, what changed is current."""
    gone_survived(apiserver, "event")


def test_gone_as_http_410_relists(apiserver):
    """Stand-in API server, answering a compacted resourceVersion with HTTP 410 Expired."""
    gone_survived(apiserver, "status")


def test_errors_back_off_and_recover(apiserver):
    """Stand-in API server failing the first requests with 500 and 503: the informer retries
    (bounded backoff), records the last error, and syncs once the server answers."""
    apiserver.apply(service("a"))
    apiserver.fail_next(500, count=2)
    apiserver.fail_next(503, "ServiceUnavailable")

    async def body():
        async with informing(apiserver) as (changes, informer, metrics):
            await asyncio.wait_for(informer.synced.wait(), 10)
            assert set(names(informer)) == {"a"}
            assert counted(metrics, "pymesh_control_kube_watch_restarts_total", resource="services", reason="error") == 3
            assert informer.status()["synced"] and informer.status()["objects"] == 1
    run(body())


def test_backoff_is_bounded_and_jittered():
    backoff = Backoff(initial=0.1, maximum=2.0, jitter=0.5)
    delays = [backoff.delay(n) for n in range(1, 30)]
    assert all(0.05 <= d <= 2.0 for d in delays)
    assert max(delays[10:]) > 1.0  # it grows to the cap
    assert len({round(d, 6) for d in delays}) > 5  # jittered, not one fixed step


def test_a_resource_type_not_served_is_synced_empty_and_asked_again(apiserver, caplog):
    """Stand-in API server without the VirtualService CRD: the 404 is reported once (a warning,
    the status's last error), the informer counts as synced with no objects, and once the CRD is
    served its objects arrive."""
    async def body():
        async with informing(apiserver, VIRTUAL_SERVICES, missing_retry=0.1) as (changes, informer, _):
            await asyncio.wait_for(informer.synced.wait(), 10)
            assert informer.missing and informer.objects() == [] and "404" in informer.status()["lastError"]
            await changes.until(lambda: sum(1 for _, t in apiserver.requests if "virtualservices" in t) >= 3,
                                "a few retries")
            warnings = [r for r in caplog.records if "does not serve" in r.getMessage()]
            assert len(warnings) == 1
            apiserver.serve(VIRTUAL_SERVICES)
            apiserver.apply({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                             "metadata": {"name": "reviews", "namespace": "default"}, "spec": {"hosts": ["reviews"]}})
            await changes.until(lambda: informer.objects(), "the VirtualService")
            assert not informer.missing and informer.objects()[0]["kind"] == "VirtualService"
    run(body())


def test_broken_watch_lines_do_not_end_the_informer(apiserver):
    """Stand-in API server writing garbage on the watch (not JSON, an object without metadata, an
    unknown type): each is an error the informer survives; it lists again and stays current."""
    apiserver.apply(service("a"))

    async def body():
        async with informing(apiserver) as (changes, informer, _):
            await asyncio.wait_for(informer.synced.wait(), 10)
            for line in (b"{not json\n", b'{"type":"MODIFIED","object":{"metadata":"x"}}\n',
                         b'{"type":"SURPRISE","object":{"metadata":{"resourceVersion":"1"}}}\n', b"[]\n"):
                await changes.until(lambda: apiserver.open_watches(SERVICES), "a watch")
                requests = apiserver.watch_requests
                apiserver.send_raw(line)
                await changes.until(lambda: apiserver.watch_requests > requests, f"a new watch after {line!r}")
            apiserver.apply(service("b"))
            await changes.until(lambda: set(names(informer)) == {"a", "b"}, "a change after the garbage")
            assert informer.last_error
    run(body())


def test_empty_watches_ending_at_once_back_off(apiserver):
    """Stand-in API server ending every watch at once with nothing in it (timeoutSeconds=0): the
    informer asks again with growing delays, not in a tight loop."""
    async def body():
        async with informing(apiserver, watch_timeout=0) as (changes, informer, metrics):
            await asyncio.wait_for(informer.synced.wait(), 10)
            await changes.until(lambda: apiserver.watch_requests >= 5, "five watches")
            seen = apiserver.watch_requests
            await asyncio.sleep(0.5)  # a window to count requests in, not a wait for an event
            assert apiserver.watch_requests - seen < 15, "a tight loop of watches"
            assert counted(metrics, "pymesh_control_kube_watch_restarts_total", resource="services", reason="ended") >= 5
    run(body())
