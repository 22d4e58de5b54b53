"""Auto-registration without I/O (pymesh/control/autoregistration.py and the registry's use of it):
the entry a WorkloadGroup's template makes, Istio's naming and label precedence, the refusals, and
health-checked entries that are endpoints only while healthy."""

from __future__ import annotations

import asyncio

import pytest

from pymesh.api import model
from pymesh.api.wire import Node
from pymesh.control import autoregistration
from pymesh.control.registry import TLS_MODE_LABEL, Registry


def group(name="reviews", ns="demo", sa="reviews", probe=None, **labels) -> model.WorkloadGroup:
    return model.WorkloadGroup(
        metadata=model.Metadata(name=name, namespace=ns),
        template=model.WorkloadEntrySpec(address="", ports={"http": 9080}, labels={"tier": "t", "app": "template"},
                                         weight=3, service_account=sa, locality="us-west/zone1"),
        labels=labels or {"app": "reviews"}, probe=probe)


def vm(node_id="vm-1.demo", ns="demo", sa="reviews", group_name="reviews", addresses=("10.0.0.7",), **labels) -> Node:
    return Node(node_id, namespace=ns, service_account=sa, labels=labels, addresses=addresses,
                workload_group=group_name)


PROBE = model.ReadinessProbe(tcp_socket=model.TCPHealthCheck(port=9080))


@pytest.mark.parametrize("node, groups, refused", [
    (vm(), (group(),), None),
    (vm(sa="ratings"), (group(),), "service account mismatch: 'ratings' vs 'reviews'"),
    (vm(sa="anything"), (group(sa=""),), None),  # a template without one takes any (as Istio)
    (vm(group_name="nope"), (group(),), "cannot find WorkloadGroup demo/nope"),
    (vm(ns="prod"), (group(),), "cannot find WorkloadGroup prod/reviews"),  # groups are per namespace
    (vm(addresses=()), (group(),), "gave no address"),
])
def test_refusal(node, groups, refused):
    why = autoregistration.refusal(node, groups)
    assert (why is None) == (refused is None) and (refused is None or refused in why), why


def test_the_entry_follows_istios_template_naming_and_label_precedence():
    entry = autoregistration.workload_entry(vm(app="own", extra="x"), group(), {TLS_MODE_LABEL: "istio"})
    assert entry.metadata.name == "reviews-10.0.0.7"
    assert entry.metadata.namespace == "demo"
    assert entry.metadata.annotations == {autoregistration.GROUP_ANNOTATION: "reviews"}
    # template < group metadata < the proxy's own
    assert entry.spec.labels == {"tier": "t", "app": "own", "extra": "x", TLS_MODE_LABEL: "istio"}
    assert entry.spec == model.WorkloadEntrySpec(address="10.0.0.7", ports={"http": 9080}, labels=entry.spec.labels,
                                                 weight=3, service_account="reviews", locality="us-west/zone1")


@pytest.mark.parametrize("group_name, address, name", [
    ("reviews", "10.0.0.7", "reviews-10.0.0.7"),
    ("reviews", "fd00::7", "reviews-fd00--7"),
    ("g" * 250, "10.0.0.7", ("g" * 250 + "-10.0.0.7")[-253:]),  # the last 253 characters, as Istio
])
def test_entry_names(group_name, address, name):
    assert autoregistration.entry_name(group_name, address) == name


def registry(**kwargs) -> tuple[Registry, list]:
    changes = []
    return Registry(1.0, on_change=lambda: changes.append(1), **kwargs), changes


def test_a_health_checked_entry_is_an_endpoint_only_while_healthy():
    async def run():
        reg, changes = registry(mtls=True)
        groups = (group(probe=PROBE),)
        reg.connect(vm())
        assert reg.entries(groups) == ()  # not before the first report
        reg.set_health("vm-1.demo", True, "")
        assert [e.metadata.name for e in reg.entries(groups)] == ["reviews-10.0.0.7"]
        before = len(changes)
        reg.set_health("vm-1.demo", True, "")  # the same report again: no new generation
        assert len(changes) == before
        reg.set_health("vm-1.demo", False, "tcp 127.0.0.1:9080: Connection refused")
        assert reg.entries(groups) == () and len(changes) == before + 1
        assert reg.health("vm-1.demo") == (False, "tcp 127.0.0.1:9080: Connection refused")
        assert [e.metadata.name for e in reg.entries((group(),))] == ["reviews-10.0.0.7"]  # no probe: health ignored
        reg.set_health("nobody", True, "")  # an unknown node's report changes nothing
        assert reg.health("nobody") is None
        reg.close()
    asyncio.run(run())


def test_group_entries_leave_with_their_group_and_a_restarted_vm_keeps_one_entry():
    async def run():
        reg, _ = registry(entry_grace=30.0)
        reg.connect(vm("vm-old.demo"))
        reg.disconnect("vm-old.demo")  # in its grace period
        reg.connect(vm("vm-new.demo", app="new"))  # the same VM, restarted under a new node id
        (entry,) = reg.entries((group(),))
        assert entry.spec.labels["app"] == "new"  # the connected one's
        assert reg.entries(()) == ()  # the group deleted: its entries go (an owner reference in Istio)
        reg.close()
    asyncio.run(run())


def test_auto_registered_proxies_have_their_own_grace():
    async def run():
        reg, _ = registry(entry_grace=30.0)
        reg.connect(vm())
        reg.connect(Node("plain.demo", namespace="demo", addresses=("10.0.0.8",)))
        reg.disconnect("vm-1.demo")
        reg.disconnect("plain.demo")
        timers = reg._timers
        assert timers["vm-1.demo"].when() - timers["plain.demo"].when() == pytest.approx(29.0, abs=0.5)
        reg.close()
    asyncio.run(run())


@pytest.mark.parametrize("groups, health, why", [
    ((group(),), None, ""),  # no probe: registered, health or not
    ((group(),), (False, "down"), ""),
    ((group(probe=PROBE),), None, "waiting for the first health report"),
    ((group(probe=PROBE),), (False, "tcp: refused"), "unhealthy: tcp: refused"),
    ((group(probe=PROBE),), (True, ""), ""),
    ((), (True, ""), "cannot find WorkloadGroup demo/reviews"),
])
def test_why_an_entry_is_not_registered_now(groups, health, why):
    entry, reason = autoregistration.registered(vm(), groups, health, {})
    assert (entry is None) == bool(why) and why in reason and (reason == "") == (why == "")


def test_a_vm_s_view_carries_its_own_group_and_the_proxy_configs_that_may_apply():
    from pymesh.routing.view import proxy_view, view_key

    def proxy_config(name: str, ns: str) -> model.ProxyConfig:
        return model.ProxyConfig(metadata=model.Metadata(name=name, namespace=ns), concurrency=2)
    config = model.MeshConfig(
        workload_groups=(group(), group(name="ratings"), group(ns="prod")),
        proxy_configs=(proxy_config("mesh", "istio-system"), proxy_config("own", "demo"), proxy_config("x", "prod")))
    view = proxy_view(config, vm())
    assert [(g.metadata.namespace, g.metadata.name) for g in view.workload_groups] == [("demo", "reviews")]
    assert [pc.metadata.name for pc in view.proxy_configs] == ["mesh", "own"]
    assert proxy_view(config, Node("plain.demo", namespace="demo")).workload_groups == ()
    assert view_key(vm()) != view_key(vm(group_name="ratings"))  # views are shared only within a group


def test_health_reports_survive_a_control_server_restart(tmp_path):
    """Saved with the registered proxies, so a health-checked VM stays an endpoint while it reconnects."""
    from pymesh.control import persist

    data = str(tmp_path)
    persist.save(data, 3, [vm()], {"vm-1.demo": (True, "")})
    assert persist.load_health(data) == {"vm-1.demo": (True, "")}
    assert persist.load_health(str(tmp_path / "none")) == {}

    async def run():
        reg, _ = registry()
        reg.restore(persist.load(data)[1], persist.load_health(data))
        assert [e.metadata.name for e in reg.entries((group(probe=PROBE),))] == ["reviews-10.0.0.7"]
        reg.close()
    asyncio.run(run())
    (tmp_path / persist.FILE).write_text('{"version": 1, "nodes": [], "health": {"x": "not a pair"}}')
    assert persist.load_health(data) == {}


def test_a_health_message_is_logged_escaped_and_a_flapping_proxy_is_throttled(caplog):
    async def run():
        reg, changes = registry()
        reg.connect(vm())
        with caplog.at_level("INFO", logger="pymesh.control.registry"):
            for i in range(20):
                reg.set_health("vm-1.demo", i % 2 == 1, "\x1b[2J\nFAKE LOG LINE")
        assert len(changes) == 1 + 20  # every transition still makes a generation (debounced by the watcher)
        lines = [r.getMessage() for r in caplog.records if "reports its application" in r.getMessage()]
        assert len(lines) == 1 and "\x1b" not in lines[0] and "\n" not in lines[0], lines
        reg.close()
    asyncio.run(run())


def test_the_health_message_on_the_wire():
    from pymesh.api import wire

    (decoded,) = wire.FrameDecoder().feed(wire.encode_message(wire.HealthMessage(False, "x" * (wire.MAX_ERROR + 5))))
    assert decoded == wire.HealthMessage(False, "x" * wire.MAX_ERROR + "...")
    body = b'{"v":1,"type":"health","healthy":"yes"}'
    (invalid,) = wire.FrameDecoder().feed(len(body).to_bytes(4, "big") + body)
    assert isinstance(invalid, wire.InvalidMessage) and "healthy" in invalid.error
