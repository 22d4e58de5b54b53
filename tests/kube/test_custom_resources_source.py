"""The custom resource source over in-memory caches (the informers' interface, no API server):
each object a unit with its last good version kept, a status-only change no change, deletion,
and the writes it queues (only on change). The same source against the stand-in API server is in
test_custom_resources_apiserver.py."""

import asyncio
import copy

from pymesh.api import model
from pymesh.control.kube.config_source import CustomResourceSource
from pymesh.control.store import ConfigStore
from pymesh.kube.custom_resources import CUSTOM_RESOURCES

VS_TYPE = next(r for r in CUSTOM_RESOURCES if r.kind.name == "VirtualService")
DR_TYPE = next(r for r in CUSTOM_RESOURCES if r.kind.name == "DestinationRule")


class Cache:
    def __init__(self, resource, objects=()):
        self.resource = resource.versions[0]
        self.synced = asyncio.Event()
        self.items = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}

    def objects(self):
        return list(self.items.values())

    def put(self, obj):
        self.items[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj


class Writes:
    """Records what the source queues (a StatusWriter's offer)."""

    def __init__(self):
        self.offered = []
        self.writes = []

    def offer(self, target, what, write):
        self.offered.append((target[0], what))
        self.writes.append(write)


def reviews(host="reviews", version="1", **extra):
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "default", "resourceVersion": version, "generation": 1,
                         "uid": "u-reviews"},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": host}}]}]}, **extra}


def make(objects=()):
    cache = Cache(VS_TYPE, objects)
    notified = []
    writes = Writes()
    source = CustomResourceSource([(VS_TYPE, cache), (DR_TYPE, Cache(DR_TYPE))], lambda: notified.append(1),
                                  writer=writes, client=object(), instance="test", clock=lambda: 1_700_000_000)
    store = ConfigStore("/nonexistent-config-dir", sources=[source])
    return cache, source, store, notified, writes


def hosts(store):
    return [r.destination.host for vs in store.config.virtual_services for h in vs.http for r in h.route]


def test_an_invalid_update_keeps_the_last_good_version_and_is_reported():
    cache, source, store, _, writes = make([reviews()])
    assert store.reload() == [] and hosts(store) == ["reviews"]
    cache.put(reviews(host="", version="2"))
    ((name, errors),) = store.reload()
    assert name == "VirtualService default/reviews"
    assert [str(e) for e in errors] == [
        "VirtualService default/reviews: spec.http[0].route[0].destination.host: empty domain name is not allowed"]
    assert hosts(store) == ["reviews"]  # the last good version stays in force
    (entry,) = source.resources()
    assert (entry["kind"], entry["namespace"], entry["name"]) == ("VirtualService", "default", "reviews")
    assert writes.offered == [("event", "an Event regarding VirtualService default/reviews"),
                              ("status", "the status of VirtualService default/reviews")]
    # the same rejected version again (a relist, a resync): nothing new written
    store.reload()
    assert len(writes.offered) == 2
    cache.put(reviews(host="ratings", version="3"))
    assert store.reload() == [] and hosts(store) == ["ratings"] and source.resources() == []
    assert writes.offered[-1] == ("status", "the status of VirtualService default/reviews")  # our entries cleared


def test_a_status_only_change_is_no_change():
    cache, source, store, notified, writes = make([reviews(host="")])
    source.on_change()
    assert notified == [1]
    store.reload()
    written = len(writes.offered)
    # our own status write comes back through the watch: a new resourceVersion, the same spec
    cache.put(reviews(host="", version="9", status={"validationMessages": [{"type": {"code": "IST0106"}}]}))
    source.on_change()
    assert notified == [1]
    store.reload()
    assert len(writes.offered) == written


def test_deletion_takes_the_objects_resources_with_it():
    cache, source, store, notified, _ = make([reviews()])
    store.reload()
    cache.items.clear()
    source.on_change()
    assert notified == [1]
    store.reload()
    assert store.config.virtual_services == () and list(source.units()) == []


def test_a_file_and_an_object_of_the_same_name_the_file_wins(tmp_path):
    (tmp_path / "vs.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews, namespace: default}\n"
        "spec: {hosts: [reviews], http: [{route: [{destination: {host: from-file}}]}]}\n")
    cache = Cache(VS_TYPE, [reviews(host="from-cluster")])
    source = CustomResourceSource([(VS_TYPE, cache)], lambda: None)
    store = ConfigStore(str(tmp_path), sources=[source])
    store.reload()
    assert hosts(store) == ["from-file"]
    (conflict,) = store.conflicts
    assert conflict.file == "VirtualService default/reviews" and "already defined at" in conflict.message


def test_hostile_objects_are_rejected_one_by_one_never_half_applied():
    good = copy.deepcopy(reviews())
    good["metadata"]["name"] = "good"
    hostile = [
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "wrong-types", "namespace": "default"}, "spec": {"hosts": "reviews", "http": {"a": 1}}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "unknown", "namespace": "default"},
         "spec": {"hosts": ["r"], "http": [{"route": [{"destination": {"host": "r"}}]}], "bogus": True}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "huge", "namespace": "default"},
         "spec": {"hosts": ["r" * (9 << 20)], "http": [{"route": [{"destination": {"host": "r"}}]}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"namespace": "default"},
         "spec": {"hosts": ["r"]}},
    ]
    cache = Cache(VS_TYPE, [good])
    for i, obj in enumerate(hostile):
        cache.items[("default", f"hostile-{i}")] = obj
    source = CustomResourceSource([(VS_TYPE, cache)], lambda: None)
    store = ConfigStore("/nonexistent-config-dir", sources=[source])
    rejected = asyncio.run(store.reload_isolated())
    assert sorted(name for name, _ in rejected) == [
        "VirtualService default/(unnamed)", "VirtualService default/huge", "VirtualService default/unknown",
        "VirtualService default/wrong-types"]
    assert [vs.metadata.name for vs in store.config.virtual_services] == ["good"]
    assert isinstance(store.config, model.MeshConfig)


class RefusingClient:
    """The API server's client, refusing every write (a 409, a dropped connection)."""

    async def patch(self, *args, **kwargs):
        raise ConnectionError("the API server went away")

    async def create(self, *args, **kwargs):
        raise ConnectionError("the API server went away")


def test_a_write_that_failed_is_sent_again_on_the_next_update():
    cache = Cache(VS_TYPE, [reviews(host="")])
    writes = Writes()
    source = CustomResourceSource([(VS_TYPE, cache)], lambda: None, writer=writes, client=RefusingClient(),
                                  instance="test", clock=lambda: 1_700_000_000)
    store = ConfigStore("/nonexistent-config-dir", sources=[source])
    store.reload()
    assert [what for what, _ in writes.offered] == ["event", "status"]

    async def send_all():
        for write in writes.writes:
            try:
                await write()
            except ConnectionError:
                pass
    asyncio.run(send_all())
    store.reload()  # nothing changed, but what failed is offered again
    assert [what for what, _ in writes.offered] == ["event", "status", "event", "status"]
