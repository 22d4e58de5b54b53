"""The control server's pieces on their own: debouncing, convergence, a proxy's session, the
per-file config store, the registry, saved state and the status table."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from control_harness import service_entry, workload_entry, write
from pymesh.api import model
from pymesh.api.wire import Ack, EndpointsMessage, Nack, Node, SnapshotMessage
from pymesh.control import persist
from pymesh.control.convergence import Convergence
from pymesh.control.mesh import Mesh
from pymesh.control.registry import Registry, workload_entry as entry_for
from pymesh.control.session import NACKED, STALE, SYNCED, ProxySession
from pymesh.control.status import format_status
from pymesh.control.store import ConfigStore
from pymesh.control.watch import Burst

# --- Burst -----------------------------------------------------------------------------------


def test_burst_applies_after_a_quiet_period() -> None:
    burst = Burst(quiet=0.1, max_delay=1.0)
    assert burst.take(0.0) is None and burst.deadline() is None
    burst.event(5.0)
    burst.event(5.05)
    assert burst.deadline() == pytest.approx(5.15)
    assert burst.take(5.1) is None
    assert burst.take(5.15) == 5.0  # the first event's time
    assert burst.take(6.0) is None  # a new, empty burst


def test_burst_is_bounded_by_the_max_delay() -> None:
    burst = Burst(quiet=0.1, max_delay=0.5)
    for i in range(10):
        burst.event(i * 0.08)  # never quiet for 0.1 s
    assert burst.deadline() == pytest.approx(0.5)
    assert burst.take(0.5) == 0.0


# --- Convergence -----------------------------------------------------------------------------


def test_convergence_waits_for_the_last_affected_proxy() -> None:
    seen = []
    now = [10.0]
    conv = Convergence(seen.append, clock=lambda: now[0])
    conv.started(3, detected_at=9.0, affected=["a", "b"])
    conv.answered("a", 3)
    assert seen == []
    now[0] = 11.5
    conv.answered("b", 3)
    assert seen == [pytest.approx(2.5)] and conv.pending == []


def test_convergence_per_proxy_is_each_answer_delay() -> None:
    per_proxy, now = [], [10.0]
    conv = Convergence(lambda _: None, clock=lambda: now[0], observe_proxy=per_proxy.append)
    conv.started(3, detected_at=9.0, affected=["a", "b", "c"])
    conv.started(4, detected_at=9.5, affected=["a"])
    conv.answered("a", 4)  # answers both versions: two delays
    now[0] = 12.0
    conv.answered("b", 3)
    conv.answered("b", 3)  # a repeated ACK is not observed again
    conv.gone("c")  # never answered: not observed
    assert per_proxy == [pytest.approx(1.0), pytest.approx(0.5), pytest.approx(3.0)]


def test_convergence_a_later_ack_answers_earlier_versions_and_gone_proxies_do_not_block() -> None:
    seen = []
    conv = Convergence(seen.append, clock=lambda: 1.0)
    conv.started(3, 0.0, ["a", "b"])
    conv.started(4, 0.5, ["a"])
    conv.answered("a", 4)
    assert conv.pending == [3]
    conv.gone("b")
    assert seen == [0.5, 1.0] and conv.pending == []


# --- ProxySession ----------------------------------------------------------------------------

SE = model.ServiceEntry(model.Metadata("a"), hosts=("a",), workload_selector={"app": "a"})
WE1 = model.WorkloadEntry(model.Metadata("w1"), model.WorkloadEntrySpec("10.0.0.1", labels={"app": "a"}))
WE2 = model.WorkloadEntry(model.Metadata("w2"), model.WorkloadEntrySpec("10.0.0.2", labels={"app": "a"}))
VIEW1 = model.MeshConfig(service_entries=(SE,), workload_entries=(WE1,))
VIEW2 = model.MeshConfig(service_entries=(SE,), workload_entries=(WE1, WE2))
VIEW3 = model.MeshConfig(service_entries=(SE, model.ServiceEntry(model.Metadata("b"), hosts=("b",))), workload_entries=(WE1,))


def session() -> ProxySession:
    return ProxySession(Node("p1"))


def test_session_first_push_is_a_snapshot_and_ack_syncs() -> None:
    s = session()
    msg = s.push("1", VIEW1)
    assert isinstance(msg, SnapshotMessage) and msg.config == VIEW1 and s.state == STALE
    assert s.ack(Ack("1", msg.nonce)) and s.state == SYNCED and s.acked_version == "1"
    assert s.push("2", VIEW1) is None  # view unchanged: not affected


def test_session_endpoint_only_change_after_ack_is_an_endpoints_message() -> None:
    s = session()
    first = s.push("1", VIEW1)
    s.ack(Ack("1", first.nonce))
    msg = s.push("2", VIEW2)
    assert isinstance(msg, EndpointsMessage)
    assert msg.base_version == "1" and msg.workload_entries == (WE1, WE2) and msg.nonce != first.nonce


def test_session_endpoint_change_without_ack_of_the_base_is_a_snapshot() -> None:
    s = session()
    s.push("1", VIEW1)
    assert isinstance(s.push("2", VIEW2), SnapshotMessage)


def test_session_other_changes_are_snapshots() -> None:
    s = session()
    s.ack(Ack("1", s.push("1", VIEW1).nonce))
    assert isinstance(s.push("2", VIEW3), SnapshotMessage)


def test_session_stale_acks_are_ignored() -> None:
    s = session()
    old = s.push("1", VIEW1)
    s.push("2", VIEW3)
    assert not s.ack(Ack("1", old.nonce)) and s.state == STALE and s.acked_version is None


def test_session_nack_and_recovery() -> None:
    s = session()
    s.ack(Ack("1", s.push("1", VIEW1).nonce))
    bad = s.push("2", VIEW3)
    assert s.nack(Nack("2", bad.nonce, "spec.x: boom"))
    assert s.state == NACKED and s.error == "spec.x: boom" and s.acked_version == "1"
    assert s.push("3", VIEW3) is None  # the same view again is not resent
    msg = s.push("4", VIEW2)
    assert isinstance(msg, SnapshotMessage)  # the NACKed push was never applied: no delta on it
    assert s.state == STALE and s.error is None
    assert not s.nack(Nack("2", bad.nonce, "late"))
    assert ProxySession.stale_base(Nack("4", "n", "stale base: serving 2")) and not ProxySession.stale_base(Nack("4", "n", "x"))


# --- Mesh ------------------------------------------------------------------------------------


def test_mesh_counts_generations_only_on_change() -> None:
    mesh = Mesh(last_version=16)
    first = mesh.update(model.MeshConfig(), (), 1.0)
    assert first.version == 17  # even an empty config is a generation after a restart
    assert mesh.update(model.MeshConfig(), (), 2.0) is None
    second = mesh.update(model.MeshConfig(), (WE1,), 3.0)
    assert second.version == 18 and second.config.workload_entries == (WE1,) and second.detected_at == 3.0


# --- ConfigStore -----------------------------------------------------------------------------


def _names(config: model.MeshConfig) -> list[str]:
    return [r.metadata.name for r in config.service_entries + config.workload_entries]


def test_store_union_matches_loading_the_directory(tmp_path: Path) -> None:
    from pymesh.api.load import load_paths

    write(tmp_path / "b.yaml", service_entry("b", "b.example.com"))
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "a.yaml", workload_entry("a", "10.0.0.1") + "---\n" + service_entry("a", "a.example.com"))
    store = ConfigStore(str(tmp_path))
    assert store.reload() == []
    assert store.config == load_paths([str(tmp_path)]).config
    assert _names(store.config) == ["b", "a", "a"]


def test_store_keeps_the_last_good_version_of_a_bad_file(tmp_path: Path) -> None:
    good = write(tmp_path / "a.yaml", service_entry("a", "a.example.com"))
    write(tmp_path / "b.yaml", service_entry("b", "b.example.com"))
    store = ConfigStore(str(tmp_path))
    store.reload()
    assert not store.poll()
    write(good, service_entry("a", "a.example.com").replace("resolution: STATIC", "resolution: SOMETIMES"))
    write(tmp_path / "c.yaml", service_entry("c", "c.example.com"))
    assert store.poll()
    rejected = store.reload()
    assert [f for f, _ in rejected] == [str(good)]
    [error] = rejected[0][1]
    assert error.file == str(good) and error.line == 13 and error.path == "spec.resolution"
    assert _names(store.config) == ["a", "b", "c"]  # a's previous version, and the good new file
    assert store.config.service_entries[0].resolution == "STATIC"
    assert store.rejected == rejected
    write(good, service_entry("a", "a2.example.com"))
    assert store.reload() == [] and store.rejected == []
    assert store.config.service_entries[0].hosts == ("a2.example.com",)


def test_store_a_bad_new_file_contributes_nothing_and_deleting_a_file_removes_its_resources(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", service_entry("a", "a.example.com"))
    bad = write(tmp_path / "bad.yaml", "kind: [\n")
    store = ConfigStore(str(tmp_path))
    assert [f for f, _ in store.reload()] == [str(bad)]
    assert _names(store.config) == ["a"]
    (tmp_path / "a.yaml").unlink()
    bad.unlink()
    assert store.reload() == [] and store.config == model.MeshConfig() and store.rejected == []


def test_store_keeps_the_config_when_the_directory_disappears(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    write(config / "a.yaml", service_entry("a", "a.example.com"))
    store = ConfigStore(str(config))
    store.reload()
    (config / "a.yaml").unlink()
    config.rmdir()
    assert not store.poll() and store.reload() == [] and _names(store.config) == ["a"]
    config.mkdir()
    assert store.poll() and store.reload() == [] and store.config == model.MeshConfig()


def test_store_reports_a_resource_defined_in_two_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", service_entry("dup", "a.example.com"))
    second = write(tmp_path / "b.yaml", service_entry("dup", "b.example.com") + "---\n" + service_entry("ok", "ok.example.com"))
    store = ConfigStore(str(tmp_path))
    store.reload()
    assert [se.hosts for se in store.config.service_entries] == [("a.example.com",), ("ok.example.com",)]
    [(file, [error])] = store.rejected
    assert file == str(second) and error.line == 1 and error.path == "metadata.name"
    assert error.message == f"ServiceEntry default/dup is already defined at {tmp_path / 'a.yaml'}:1; ignored"


# --- Registry --------------------------------------------------------------------------------


def test_workload_entry_of_a_node() -> None:
    node = Node("r-1.demo", "r", "demo", "reviews", {"app": "r"}, ("10.0.0.9", "fd00::9"), {"http": 9080})
    entry = entry_for(node)
    assert entry.metadata.name == "r-1.demo" and entry.metadata.namespace == "demo"
    assert entry.spec == model.WorkloadEntrySpec("10.0.0.9", {"http": 9080}, {"app": "r"}, 1, "reviews")
    assert entry_for(Node("no-address")) is None


def test_registry_grace_and_reconnect() -> None:
    async def body() -> None:
        changes = []
        expired = asyncio.Event()
        registry = Registry(0.05, on_change=lambda: changes.append(1), on_expire=lambda _: expired.set())
        node = Node("p", addresses=("10.0.0.1",))
        registry.connect(node)
        registry.connect(node)  # a second stream of the same proxy
        assert len(changes) == 1 and [e.metadata.name for e in registry.entries()] == ["p"]
        registry.disconnect("p")
        assert registry.connected("p")
        registry.disconnect("p")
        assert not registry.connected("p") and registry.entries()  # in its grace period
        registry.connect(node)  # back in time: nothing changed
        assert len(changes) == 1
        registry.disconnect("p")
        await asyncio.wait_for(expired.wait(), 5)
        assert registry.entries() == () and len(changes) == 2

    asyncio.run(body())


# --- persisted state -------------------------------------------------------------------------


def test_persisted_state_round_trip(tmp_path: Path) -> None:
    nodes = [Node("a", labels={"app": "a"}, addresses=("10.0.0.1",)), Node("b")]
    persist.save(str(tmp_path / "data"), 42, nodes)
    assert persist.load(str(tmp_path / "data")) == (42, nodes)
    assert persist.load(str(tmp_path / "none")) == (0, [])
    (tmp_path / "data" / persist.FILE).write_text("{broken")
    assert persist.load(str(tmp_path / "data")) == (0, [])


# --- status table ----------------------------------------------------------------------------


def test_status_table() -> None:
    status = {
        "version": "7",
        "proxies": [
            {"id": "reviews-v1.default", "namespace": "default", "addresses": ["10.0.0.1"], "connected": True,
             "pushed_version": "7", "acked_version": "7", "state": "SYNCED", "error": None},
            {"id": "db", "namespace": "shop", "addresses": [], "connected": False,
             "pushed_version": "7", "acked_version": "6", "state": "NACKED", "error": "boom"},
            {"id": "vm", "namespace": "shop", "addresses": ["10.0.0.9"], "connected": True, "pushed_version": "7",
             "acked_version": "7", "state": "SYNCED", "error": None, "workload_group": "db",
             "workload_entry": None, "not_registered": "unhealthy: HTTP 503",
             "health": {"healthy": False, "message": "HTTP 503"}},
        ],
        "rejected": [{"file": "x.yaml", "errors": ["x.yaml:3 spec.hosts: required"]}],
    }
    assert format_status(status).splitlines() == [
        "config version 7, 3 proxies",
        "NAME                 NAMESPACE   ADDRESS    PUSHED   ACKED   STATE",
        "reviews-v1.default   default     10.0.0.1   7        7       SYNCED",
        "db                   shop        -          7        6       NACKED: boom (disconnected)",
        "vm                   shop        10.0.0.9   7        7       SYNCED; not registered: unhealthy: HTTP 503",
        "",
        "REJECTED FILES (their last good version stays in force):",
        "  x.yaml",
        "    x.yaml:3 spec.hosts: required",
    ]
