"""The request filter chain's contract (pymesh/proxy/filters.py): a filter continues, answers
locally, or pauses and resumes; the built-in header work runs as filters. In process, on the
real Runtime and DownstreamH1 with the fuzz target's glue, against a real loopback upstream
(tests/fuzz/upstream.py, an h11 server); chains are swapped in the runtime as a snapshot would."""

from __future__ import annotations

import asyncio

import pytest

from pymesh.proxy.interfaces import PAUSE
from pymesh.proxy.local_reply import LocalReply
from tests.fuzz import glue
from tests.fuzz.upstream import RecordingUpstream

REQUEST = b"GET /public/f HTTP/1.1\r\nHost: svc.local\r\n\r\n"


class Recorder:
    def __init__(self, log: list, name: str) -> None:
        self.log, self.name = log, name

    def on_request(self, exchange, request):
        self.log.append(self.name)


class Denier:
    def on_request(self, exchange, request):
        return LocalReply(403, "-", b"denied by filter")


class Pauser:
    """Pauses every request; the test resumes it (as a fault delay's timer would)."""

    def __init__(self) -> None:
        self.paused = []

    def on_request(self, exchange, request):
        self.paused.append(exchange)
        request.headers.append((b"x-paused", b"1"))
        return PAUSE


async def until(predicate, steps: int = 2000) -> None:
    for _ in range(steps):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def run(scenario) -> None:
    async def main():
        upstream = await RecordingUpstream().start()
        proxy = glue.Proxy(asyncio.get_running_loop(), glue.compile_config(upstream.port), glue.telemetry())
        try:
            await scenario(proxy, upstream)
        finally:
            proxy.close()
            await upstream.stop()
    asyncio.run(main())


def with_chain(proxy, *extra, after=()) -> None:
    """Install `extra` before the built-in outbound filters (and `after` behind them), for
    routes with and without header operations alike."""
    builtin = proxy.runtime.filter_chains["outbound"][0]
    chain = tuple(extra) + builtin + tuple(after)
    proxy.runtime.filter_chains = {"outbound": (chain, chain), "inbound": ((), ())}


def test_filters_run_in_order_before_the_request_goes_upstream():
    async def scenario(proxy, upstream):
        log = []
        with_chain(proxy, Recorder(log, "a"), Recorder(log, "b"))
        client = proxy.client()
        client.send(REQUEST)
        await until(lambda: b"\r\n\r\n" in client.transport.out)
        assert log == ["a", "b"]
        assert client.transport.out.startswith(b"HTTP/1.1 200")
        assert [r.target for r in upstream.requests] == [b"/public/f"]
    run(scenario)


def test_a_local_reply_from_a_filter_answers_and_nothing_goes_upstream():
    async def scenario(proxy, upstream):
        log = []
        with_chain(proxy, Denier(), Recorder(log, "after"))
        client = proxy.client()
        client.send(REQUEST)
        await until(lambda: b"denied by filter" in client.transport.out)
        assert client.transport.out.startswith(b"HTTP/1.1 403")
        assert log == []  # the chain stopped at the reply
        client.send(REQUEST)  # the connection is still usable
        await until(lambda: client.transport.out.count(b"HTTP/1.1 403") == 2)
        assert upstream.requests == []
    run(scenario)


async def paused_request(proxy, log: list) -> tuple:
    """A request paused by a Pauser ahead of a Recorder, with the loop run a while: (pauser, client)."""
    pauser = Pauser()
    with_chain(proxy, pauser, Recorder(log, "after"))
    client = proxy.client()
    client.send(REQUEST)
    await until(lambda: pauser.paused)
    for _ in range(20):  # nothing moves while paused
        await asyncio.sleep(0)
    return pauser, client


def test_a_paused_request_waits_and_resumes_after_the_filter_that_paused():
    async def scenario(proxy, upstream):
        log = []
        pauser, client = await paused_request(proxy, log)
        assert upstream.requests == [] and client.transport.out == b"" and log == []
        pauser.paused[0].resume_filters()
        await until(lambda: b"\r\n\r\n" in client.transport.out)
        assert log == ["after"]
        assert client.transport.out.startswith(b"HTTP/1.1 200")
        assert len(upstream.requests) == 1
    run(scenario)


@pytest.mark.parametrize("sent,kept", [(b"X-Request-Id: from-client\r\n", True), (b"", False)])
def test_request_id_filter_keeps_or_generates(sent, kept):
    async def scenario(proxy, upstream):
        seen = []

        class Spy:
            def on_request(self, exchange, request):
                seen.append(dict(request.headers).get(b"x-request-id"))

        with_chain(proxy, after=(Spy(),))
        client = proxy.client()
        client.send(REQUEST.replace(b"\r\n\r\n", b"\r\n" + sent + b"\r\n"))
        await until(lambda: b"\r\n\r\n" in client.transport.out)
        if kept:
            assert seen == [b"from-client"]
        else:
            assert len(seen[0]) == 36  # a generated UUID4
    run(scenario)


def test_a_paused_request_whose_client_left_is_not_resumed():
    async def scenario(proxy, upstream):
        log = []
        pauser, client = await paused_request(proxy, log)
        client.protocol.connection_lost(None)  # the client went away during the pause
        pauser.paused[0].resume_filters()
        for _ in range(20):
            await asyncio.sleep(0)
        assert log == [] and upstream.requests == []
    run(scenario)
