"""The control server over real sockets: a subprocess `pymesh control serve`, driven by the test
client in control_client.py. Every wait is bounded: messages are awaited with timeouts and
/status is polled with a deadline."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

from control_client import ControlClient, Ended, node
from control_harness import cli, service_entry, sidecar, virtual_service, workload_entry, write
from pymesh.api.wire import EndpointsMessage, Hello, SnapshotMessage

REVIEWS = "reviews.default.svc.cluster.local"


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def hosts(msg: SnapshotMessage) -> list[str]:
    return [h for se in msg.config.service_entries for h in se.hosts]


def entries(msg) -> list[str]:
    items = msg.workload_entries if isinstance(msg, EndpointsMessage) else msg.config.workload_entries
    return [e.metadata.name for e in items]


async def synced(client: ControlClient, cls=SnapshotMessage):
    """Receive the next message, check its type, ACK it."""
    msg = await client.expect(cls)
    client.ack(msg)
    return msg


def test_hello_gets_a_snapshot_and_ack_is_synced(control, config_dir) -> None:
    write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS, endpoints=["10.0.0.1"]))
    server = control()

    async def body():
        client = await ControlClient.connect(server.port)
        msg = await client.hello(node("productpage-1.default", app="productpage"))
        assert client.status == "200"
        assert isinstance(msg, SnapshotMessage) and msg.version == server.status()["version"]
        assert hosts(msg) == [REVIEWS] and len(msg.nonce) >= 8
        record = server.wait_proxy("productpage-1.default", "STALE before the ACK", lambda p: p["pushed_version"])
        assert record["state"] == "STALE" and record["connected"] and record["addresses"] == ["10.1.0.1"]
        client.ack(msg)
        record = server.wait_proxy("productpage-1.default", "SYNCED", lambda p: p["state"] == "SYNCED")
        assert record["acked_version"] == record["pushed_version"] == msg.version and record["error"] is None
        assert server.metric("pymesh_control_connected_proxies") == 1
        assert server.metric('pymesh_control_pushes_total{type="snapshot"}') >= 1
        assert server.get("/ready") == b"ready\n"
        await client.close()
        server.wait_proxy("productpage-1.default", "disconnected", lambda p: not p["connected"])
        assert server.metric("pymesh_control_connected_proxies") == 0

    run(body())


def test_nack_shows_in_status_and_in_the_cli_table(control, config_dir) -> None:
    write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS))
    server = control()

    async def body():
        good = await ControlClient.connect(server.port)
        good.send(Hello(node("good-1.default")))
        await synced(good)
        bad = await ControlClient.connect(server.port)
        msg = await bad.hello(node("bad-1.default", address="10.1.0.9"))
        bad.nack(msg, "spec.http[0].timeout: not supported by this proxy")
        record = server.wait_proxy("bad-1.default", "NACKED", lambda p: p["state"] == "NACKED")
        assert record["error"] == "spec.http[0].timeout: not supported by this proxy" and record["acked_version"] is None
        server.wait_proxy("good-1.default", "SYNCED", lambda p: p["state"] == "SYNCED")
        assert server.metric("pymesh_control_nacks_total") == 1
        table = subprocess.run([*cli(), "status", "--server", f"127.0.0.1:{server.admin_port}"],
                               capture_output=True, text=True, timeout=30)
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[1].split() == ["NAME", "NAMESPACE", "ADDRESS", "PUSHED", "ACKED", "STATE"]
        [bad_line] = [l for l in lines if l.startswith("bad-1.default")]
        [good_line] = [l for l in lines if l.startswith("good-1.default")]
        assert bad_line.split()[:5] == ["bad-1.default", "default", "10.1.0.9", msg.version, "-"]
        assert bad_line.endswith("NACKED: spec.http[0].timeout: not supported by this proxy")
        assert good_line.split() == ["good-1.default", "default", "10.1.0.1", msg.version, msg.version, "SYNCED"]
        # `pymesh proxy-status` (and its alias `ps`): the same proxies in istioctl's columns
        for name in ("proxy-status", "ps"):
            table = subprocess.run([sys.executable, "-m", "pymesh", name, "--server", f"127.0.0.1:{server.admin_port}"],
                                   capture_output=True, text=True, timeout=30)
            assert table.returncode == 0, table.stderr
            header, *rows = table.stdout.splitlines()
            assert header.split() == ["NAME", "CLUSTER", "CDS", "LDS", "EDS", "RDS", "VERSION"]
            assert sorted(row.split()[:7] for row in rows) == [
                ["bad-1.default", "-", "NACKED", "NACKED", "NACKED", "NACKED", "-"],
                ["good-1.default", "-", "SYNCED", "SYNCED", "SYNCED", "SYNCED", msg.version]]
            [bad_line] = [row for row in rows if row.startswith("bad-1.default")]
            assert bad_line.endswith("   NACKED: spec.http[0].timeout: not supported by this proxy")
        await good.close()
        await bad.close()

    run(body())


def test_cli_status_without_a_server_exits_1(tmp_path) -> None:
    from control_harness import free_port

    result = subprocess.run([*cli(), "status", "--server", f"127.0.0.1:{free_port()}"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "cannot reach the control server at http://127.0.0.1:" in result.stderr


def test_editing_a_file_pushes_within_a_second(control, config_dir) -> None:
    vs_file = write(config_dir / "vs.yaml", virtual_service("reviews", REVIEWS, REVIEWS, timeout="5s"))
    write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS))
    server = control()

    async def body():
        client = await ControlClient.connect(server.port)
        client.send(Hello(node("p-1.default")))
        first = await synced(client)
        assert first.config.virtual_services[0].http[0].timeout == 5.0
        write(vs_file, virtual_service("reviews", REVIEWS, REVIEWS, timeout="7s"))
        msg = await client.expect(SnapshotMessage, timeout=2.0)
        assert int(msg.version) == int(first.version) + 1
        assert msg.config.virtual_services[0].http[0].timeout == 7.0
        client.ack(msg)
        server.wait_status(lambda s: server.metric("pymesh_control_convergence_seconds_count") == 1,
                           "one convergence observation")
        assert server.metric("pymesh_control_convergence_seconds_sum") < 5
        await client.close()

    run(body())


def test_a_bad_file_is_rejected_and_nothing_else_changes_until_fixed(control, config_dir) -> None:
    reviews = write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS))
    other = write(config_dir / "other.yaml", service_entry("ratings", "ratings.default.svc.cluster.local"))
    server = control()

    async def body():
        client = await ControlClient.connect(server.port)
        client.send(Hello(node("p-1.default", address=None)))  # not an endpoint: no generation of its own
        first = await synced(client)
        broken = service_entry("reviews", "reviews-new.default.svc.cluster.local").replace("number: 9080", "number: -1")
        write(reviews, broken)
        status = server.wait_status(lambda s: s["rejected"], "the rejected file")
        [rejected] = status["rejected"]
        assert rejected["file"] == str(reviews)
        assert rejected["errors"] == [f"{reviews}:9 spec.ports[0].number: must be between 1 and 65535, got -1"]
        assert status["version"] == first.version  # no new generation
        assert server.metric("pymesh_control_config_rejections_total") == 1
        # the next push is for the next good change, and still carries reviews' last good version
        write(other, service_entry("ratings", "ratings2.default.svc.cluster.local"))
        msg = await synced(client)
        assert sorted(hosts(msg)) == sorted([REVIEWS, "ratings2.default.svc.cluster.local"])
        write(reviews, service_entry("reviews", "reviews-new.default.svc.cluster.local"))
        msg = await synced(client)
        assert "reviews-new.default.svc.cluster.local" in hosts(msg) and REVIEWS not in hosts(msg)
        server.wait_status(lambda s: not s["rejected"], "the rejection to clear")
        await client.close()

    run(body())


def test_registered_proxy_is_an_endpoint_and_leaves_after_the_grace(control, config_dir) -> None:
    write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS, selector={"app": "reviews"}))
    server = control(grace=0.5)

    async def body():
        watcher = await ControlClient.connect(server.port)
        watcher.send(Hello(node("productpage-1.default", app="productpage")))
        assert entries(await synced(watcher)) == []
        member = await ControlClient.connect(server.port)
        msg = await member.hello(node("reviews-v1-1.default", address="10.1.0.7", app="reviews"))
        member.ack(msg)
        update = await synced(watcher, EndpointsMessage)
        assert entries(update) == ["reviews-v1-1.default"]
        [entry] = update.workload_entries
        assert entry.spec.address == "10.1.0.7" and entry.spec.labels == {"app": "reviews"}
        assert entry.spec.ports == {"http": 8080} and entry.spec.service_account == "reviews"
        await member.close()
        server.wait_proxy("reviews-v1-1.default", "disconnected", lambda p: not p["connected"])
        gone = await synced(watcher, EndpointsMessage)
        assert entries(gone) == []
        server.wait_status(lambda s: [p["id"] for p in s["proxies"]] == ["productpage-1.default"],
                           "the departed proxy to leave /status")
        await watcher.close()

    run(body())


def test_reconnect_within_the_grace_keeps_the_endpoint(control, config_dir) -> None:
    write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS, selector={"app": "reviews"}))
    marker = write(config_dir / "marker.yaml", service_entry("marker", "m1.example.com"))
    server = control(grace=1.0)

    async def body():
        watcher = await ControlClient.connect(server.port)
        watcher.send(Hello(node("productpage-1.default", app="productpage")))
        await synced(watcher)
        member_node = node("reviews-v1-1.default", address="10.1.0.7", app="reviews")
        member = await ControlClient.connect(server.port)
        first = await member.hello(member_node)
        member.ack(first)
        assert entries(await synced(watcher, EndpointsMessage)) == ["reviews-v1-1.default"]
        await member.close()
        server.wait_proxy("reviews-v1-1.default", "disconnected", lambda p: not p["connected"])
        member = await ControlClient.connect(server.port)
        again = await member.hello(member_node, last_version=first.version)
        assert isinstance(again, SnapshotMessage)  # a new stream always starts with a full snapshot
        server.wait_proxy("reviews-v1-1.default", "reconnected", lambda p: p["connected"])
        await watcher.silent(1.5)  # past the grace: no endpoint change was pushed
        write(marker, service_entry("marker", "m2.example.com"))
        msg = await synced(watcher)
        assert "m2.example.com" in hosts(msg) and entries(msg) == ["reviews-v1-1.default"]
        await member.close()
        await watcher.close()

    run(body())


def test_endpoint_only_change_and_stale_base_nack(control, config_dir) -> None:
    write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS, selector={"app": "reviews"}))
    workloads = write(config_dir / "workloads.yaml", workload_entry("r1", "10.0.0.1", app="reviews"))
    server = control()

    async def body():
        client = await ControlClient.connect(server.port)
        client.send(Hello(node("productpage-1.default", app="productpage")))
        base = await synced(client)
        assert entries(base) == ["r1"]
        write(workloads, workload_entry("r1", "10.0.0.1", app="reviews") + "---\n" + workload_entry("r2", "10.0.0.2", app="reviews"))
        delta = await client.expect(EndpointsMessage)
        assert delta.base_version == base.version and int(delta.version) > int(base.version)
        assert entries(delta) == ["r1", "r2"]
        client.nack(delta, "stale base: serving version 0")
        full = await client.expect(SnapshotMessage)
        assert full.version == delta.version and full.nonce != delta.nonce and entries(full) == ["r1", "r2"]
        client.ack(full)
        server.wait_proxy("productpage-1.default", "SYNCED", lambda p: p["state"] == "SYNCED")
        write(workloads, workload_entry("r2", "10.0.0.2", app="reviews"))
        delta = await client.expect(EndpointsMessage)
        assert delta.base_version == full.version and entries(delta) == ["r2"]
        assert server.metric('pymesh_control_pushes_total{type="endpoints"}') == 2
        await client.close()

    run(body())


def test_sidecar_scoping_limits_the_view_and_the_pushes(control, config_dir) -> None:
    write(config_dir / "shop.yaml", service_entry("cart", "cart.shop.svc.cluster.local", ns="shop"))
    elsewhere = write(config_dir / "default.yaml", service_entry("reviews", REVIEWS))
    write(config_dir / "sidecar.yaml", sidecar("scope", "shop", ["./*"]))
    cart = write(config_dir / "cart-vs.yaml", virtual_service("cart", "cart.shop.svc.cluster.local", "cart.shop.svc.cluster.local", ns="shop"))
    server = control()

    async def body():
        scoped = await ControlClient.connect(server.port)
        scoped.send(Hello(node("cart-1.shop", namespace="shop", app="cart")))
        view = await synced(scoped)
        assert hosts(view) == ["cart.shop.svc.cluster.local"]
        assert [s.metadata.name for s in view.config.sidecars] == ["scope"]
        unscoped = await ControlClient.connect(server.port)
        unscoped.send(Hello(node("p-1.default")))
        assert sorted(hosts(await synced(unscoped))) == sorted(["cart.shop.svc.cluster.local", REVIEWS])
        write(elsewhere, service_entry("reviews", REVIEWS, port=9081))
        await synced(unscoped)  # only the unscoped proxy sees that change
        write(cart, virtual_service("cart", "cart.shop.svc.cluster.local", "cart.shop.svc.cluster.local", ns="shop", timeout="9s"))
        msg = await synced(scoped)
        assert msg.config.virtual_services[0].http[0].timeout == 9.0
        assert int(msg.version) == int(view.version) + 2  # the generation in between was not pushed to it
        await scoped.close()
        await unscoped.close()

    run(body())


def test_large_snapshot_through_a_small_window(control, config_dir) -> None:
    text = "---\n".join(service_entry(f"s{i}", f"s{i}.example.com", endpoints=["10.0.0.1"]) for i in range(1500))
    write(config_dir / "many.yaml", text)
    server = control()

    async def body():
        client = await ControlClient.connect(server.port, window=1024)
        msg = await client.hello(node("p-1.default"), )
        assert len(msg.config.service_entries) == 1500
        assert client.received_bytes > 4 * 65_535  # several times the default HTTP/2 window
        await client.close()

    run(body())


def test_a_stuck_proxy_does_not_block_others(control, config_dir) -> None:
    text = "---\n".join(service_entry(f"s{i}", f"s{i}.example.com") for i in range(300))
    edited = write(config_dir / "many.yaml", text)
    server = control()

    async def body():
        stuck = await ControlClient.connect(server.port, window=100, acknowledge=False)
        stuck.send(Hello(node("stuck-1.default")))
        healthy = await ControlClient.connect(server.port)
        healthy.send(Hello(node("healthy-1.default")))
        await synced(healthy)
        for i in range(3):
            write(edited, text + "---\n" + service_entry("new", f"new{i}.example.com"))
            msg = await synced(healthy)
            assert f"new{i}.example.com" in hosts(msg)
        assert stuck.received_bytes < 70_000  # only what its windows allowed
        assert server.proxy("stuck-1.default")["state"] == "STALE"
        await stuck.close()
        await healthy.close()

    run(body())


def test_protocol_errors_end_the_stream_with_a_reason(control, config_dir) -> None:
    server = control()

    async def body():
        client = await ControlClient.connect(server.port)
        client.send_bytes(b"\x00\x00\x00\x02{]")
        ended = await client.expect(Ended)
        assert ended.trailers["pymesh-error"].startswith("frame is not JSON")
        client = await ControlClient.connect(server.port)
        client.send_bytes(b'\x00\x00\x00\x18{"v":2,"type":"hello"}  ')
        ended = await client.expect(Ended)
        assert ended.trailers["pymesh-error"] == "unsupported protocol version 2 (this side speaks 1)"
        client = await ControlClient.connect(server.port)
        from pymesh.api.wire import Ack

        client.send(Ack("1", "n"))
        ended = await client.expect(Ended)
        assert ended.trailers["pymesh-error"] == "ack before hello"
        client = await ControlClient.connect(server.port)
        client.send_bytes(b'\x00\x00\x00\x2a{"v":1,"type":"hello","node":{"id":7}}       ')
        ended = await client.expect(Ended)
        assert ended.trailers["pymesh-error"] == "invalid hello message: hello: node.id: expected string, got int"
        client = await ControlClient.connect(server.port)
        client.send(Hello(node("")))
        ended = await client.expect(Ended)
        assert ended.trailers["pymesh-error"] == "hello: node.id must not be empty"
        assert server.status()["proxies"] == []

    run(body())


def test_wrong_path_is_404(control, config_dir) -> None:
    import h2.connection

    server = control()

    async def body():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        conn = h2.connection.H2Connection()
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "x")], end_stream=True)
        writer.write(conn.data_to_send())
        while True:
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data
            for event in conn.receive_data(data):
                if hasattr(event, "headers") and event.headers:
                    assert dict(event.headers)[b":status"] == b"404"
                    writer.close()
                    return

    run(body())


def test_sigterm_sends_goaway_and_a_restarted_server_sends_full_snapshots(control, config_dir, tmp_path) -> None:
    write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS, selector={"app": "reviews"}))
    data_dir = tmp_path / "data"
    server = control(0.5, data_dir)

    async def body():
        client = await ControlClient.connect(server.port)
        first = await client.hello(node("reviews-v1-1.default", app="reviews"))
        client.ack(first)
        await synced(client, EndpointsMessage)  # its own registration
        port, admin = server.port, server.admin_port
        assert server.stop(signal.SIGTERM) == 0
        ended = await client.expect(Ended)
        assert ended.why in ("StreamEnded", "GOAWAY", "connection closed")
        # the same addresses again, as a restarted deployment would have
        restarted = control(0.5, data_dir, "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}")
        assert restarted.port == port
        [record] = restarted.status()["proxies"]  # known from the saved state, not reconnected yet
        assert record["id"] == "reviews-v1-1.default" and not record["connected"] and record["pushed_version"] is None
        # its saved state: versions go on increasing, and the proxy is still an endpoint
        client = await ControlClient.connect(port)
        msg = await client.hello(node("reviews-v1-1.default", app="reviews"), last_version="2")
        assert isinstance(msg, SnapshotMessage) and int(msg.version) > 2
        assert entries(msg) == ["reviews-v1-1.default"]
        await client.close()

    run(body())


def test_restart_without_saved_state_holds_reconnecting_proxies_for_the_grace(control, config_dir) -> None:
    write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS, selector={"app": "reviews"}))
    server = control(grace=3.0)

    async def body():
        # both proxies served some version of an earlier server: they keep serving it and get
        # their first snapshot once the others had a grace period to reconnect
        member = await ControlClient.connect(server.port)
        member.send(Hello(node("reviews-v1-1.default", app="reviews"), last_version="41"))
        other = await ControlClient.connect(server.port)
        other.send(Hello(node("productpage-1.default", app="productpage"), last_version="41"))
        fresh = await ControlClient.connect(server.port)
        assert isinstance(await fresh.hello(node("new-1.default")), SnapshotMessage)  # a new proxy does not wait
        assert other.messages.empty() and member.messages.empty()
        msg = await other.expect(SnapshotMessage)
        assert entries(msg) == ["reviews-v1-1.default"]  # the endpoint that reconnected in the meantime
        for c in (member, other, fresh):
            await c.close()

    run(body())


def _mesh_config_map(provider: str) -> str:
    return ("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n"
            f"  mesh: |\n    extensionProviders:\n    - name: {provider}\n      zipkin:\n"
            "        service: zipkin.istio-system.svc.cluster.local\n        port: 9411\n")


def test_the_istio_mesh_config_map_in_the_directory_is_served_and_a_second_is_a_conflict(control, config_dir) -> None:
    """The istio ConfigMap (Istio's mesh config) in --config-dir: the server starts with it (it
    crashed at start: the union keyed every resource by its metadata, which the mesh config has
    not), proxies get it, and one defined again in a later file is reported and ignored."""
    write(config_dir / "a-mesh.yaml", _mesh_config_map("tracer"))
    write(config_dir / "reviews.yaml", service_entry("reviews", REVIEWS, endpoints=["10.0.0.1"]))
    server = control()

    async def body():
        client = await ControlClient.connect(server.port)
        msg = await client.hello(node("productpage-1.default", app="productpage"))
        client.ack(msg)
        assert [p.name for m in msg.config.mesh_configs for p in m.extension_providers] == ["tracer"]
        write(config_dir / "b-mesh.yaml", _mesh_config_map("other"))
        status = server.wait_status(lambda s: s["rejected"], "the second mesh config reported")
        [rejected] = status["rejected"]
        assert rejected["file"] == str(config_dir / "b-mesh.yaml")
        assert rejected["errors"] == [f"{config_dir / 'b-mesh.yaml'}:1 metadata.name: ConfigMap istio-system/istio "
                                      f"is already defined at {config_dir / 'a-mesh.yaml'}:1; ignored"]
        await client.close()

    run(body())
