"""Target `proxy`: bytes from a client through the real proxy to a recording upstream and back.

Per input: a fresh Runtime; the input's chunks go to one downstream connection (the loop runs until
quiet before each, and a paused or closing connection gets no more bytes); then, optionally, the
client's EOF; then a bystander ("victim") sends one ordinary request on a second connection, so
that whatever the first left on a pooled upstream connection meets it. The oracle (issue 8):
- every request the upstream parses (h11) is one the proxy parsed, with the same method, target
  and body (a body cut short only while the request is still arriving), each used once;
- no upstream connection holds the start of a request head between requests;
- the client can parse what the proxy wrote (h11): at most one response per request it parsed,
  each upstream answer echoing that request's method and target, then at most one refusal
  (4xx/5xx, not from the upstream, and the connection closes), nothing after; a response is cut
  short only by a reset;
- the victim gets exactly its own answer; nothing raises, in a callback or out of one;
- the loop comes to rest within a bounded number of steps.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import h11

from . import glue
from .inputs import Input, InvariantBroken, parse
from .upstream import RecordingUpstream

VICTIM = b"GET /public/victim HTTP/1.1\r\nHost: svc.local\r\nAuthorization: Bearer victim\r\n\r\n"
QUIET_STEPS = 4  # loop iterations without activity (and no pending task) that count as rest
MAX_STEPS = 2000


@dataclass
class Answer:
    status: int
    echo: bool  # from the upstream (x-echo), not a local reply
    body: bytes


class Harness:
    """One event loop, one recording upstream and one compiled snapshot, for many inputs."""

    def __init__(self) -> None:
        try:
            import uvloop
            self.loop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is a pymesh dependency
            self.loop = asyncio.new_event_loop()
        self.errors: list[str] = []
        self.loop.set_exception_handler(lambda loop, context: self.errors.append(_describe(context)))
        self.upstream = self.loop.run_until_complete(RecordingUpstream().start())
        self.snapshot = glue.compile_config(self.upstream.port)
        self.telemetry = glue.telemetry()

    def close(self) -> None:
        self.loop.run_until_complete(self.upstream.stop())
        self.loop.close()

    def check(self, data: bytes) -> None:
        self.check_input(parse(data))

    def check_input(self, item: Input) -> None:
        self.errors.clear()
        self.upstream.reset()
        self.loop.run_until_complete(self._run(item))

    async def _run(self, item: Input) -> None:
        proxy = glue.Proxy(self.loop, self.snapshot, self.telemetry)
        clients = []
        try:
            client = proxy.client()
            clients.append(client)
            for chunk in item.chunks():
                await self.settle(clients)
                if not client.transport.readable():
                    break
                _call(client.send, chunk)
            await self.settle(clients)
            if item.eof and client.transport.readable():
                _call(client.send_eof)
                await self.settle(clients)
            victim = proxy.client()
            clients.append(victim)
            _call(victim.send, VICTIM)
            await self.settle(clients)
            self.judge(client, victim)
        finally:
            for each in clients:
                each.close()
            await self.settle(clients)
            proxy.close()

    async def settle(self, clients) -> None:
        """Run the loop until nothing happens for QUIET_STEPS iterations, bounded."""
        quiet = 0
        for _ in range(MAX_STEPS):
            before = self._activity(clients)
            await asyncio.sleep(0)
            if self._activity(clients) == before and len(asyncio.all_tasks(self.loop)) <= 1:
                quiet += 1
                if quiet >= QUIET_STEPS:
                    return
            else:
                quiet = 0
        raise InvariantBroken(f"the proxy did not come to rest in {MAX_STEPS} loop steps")

    def _activity(self, clients) -> tuple:
        return (self.upstream.activity(), tuple((len(c.transport.out), c.transport.closing, c.transport.paused) for c in clients))

    # the oracle ---------------------------------------------------------------------------------

    def judge(self, client: glue.Client, victim: glue.Client) -> None:
        if self.errors:
            raise InvariantBroken("exception in a callback: " + "; ".join(self.errors))
        self._upstream_saw_only_routed(client.parsed + victim.parsed)
        answers = client_view(client, "client")
        for index, answer in enumerate(answers):
            request = client.parsed[index]
            expected = f"{request.method} {request.target}".encode("latin-1")
            if answer.echo and answer.body != expected and request.method != "HEAD":
                raise InvariantBroken(f"response {index} answers {answer.body!r}, the client asked {expected!r}")
        mine = client_view(victim, "victim")
        if [(a.status, a.echo, a.body) for a in mine] != [(200, True, b"GET /public/victim")]:
            raise InvariantBroken(f"the victim's request was answered with {mine!r}")

    def _upstream_saw_only_routed(self, parsed: list[glue.Parsed]) -> None:
        unused = list(parsed)
        for request in self.upstream.requests:
            match = next((p for p in unused if _same(p, request)), None)
            if match is None:
                raise InvariantBroken(
                    f"the upstream parsed a request the proxy never routed: {request!r}\n"
                    f"the proxy parsed: {parsed!r}\nupstream bytes: {self._raw()!r}"
                )
            unused.remove(match)
        for conn in self.upstream.connections:
            if conn.error:
                raise InvariantBroken(f"the upstream could not parse what the proxy sent ({conn.error}): {bytes(conn.raw)!r}")
            if conn.partial_head():
                raise InvariantBroken(f"an upstream connection holds the start of a request: {conn.partial_head()!r}")

    def _raw(self) -> list[bytes]:
        return [bytes(conn.raw) for conn in self.upstream.connections]


def _same(parsed: glue.Parsed, request) -> bool:
    if request.method.decode("latin-1") != parsed.method or request.target.decode("latin-1") != parsed.target:
        return False
    if request.complete:
        return parsed.complete and bytes(parsed.body) == bytes(request.body)
    return bytes(parsed.body).startswith(bytes(request.body))


def client_view(client: glue.Client, who: str) -> list[Answer]:
    """The responses the client can parse from what the proxy wrote, given what it asked."""
    conn = h11.Connection(h11.CLIENT)
    if client.transport.out:
        conn.receive_data(bytes(client.transport.out))
    if client.transport.closing or client.transport.eof_written:
        conn.receive_data(b"")  # h11's EOF
    answers: list[Answer] = []
    for request in client.parsed:
        answer, switched = _ask(conn, client, who, request.method, request.upgrade)
        if answer is None:
            return answers
        answers.append(answer)
        if switched or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return answers
        conn.start_next_cycle()
    if conn.trailing_data[0]:  # the answer to bytes that made no request: a refusal, then close
        refusal, _ = _ask(conn, client, who, "GET", False)
        if refusal is None or refusal.status < 400 or refusal.echo or not client.transport.closing:
            raise InvariantBroken(f"{who}: after the answers to its requests, {refusal!r}: {bytes(client.transport.out)!r}")
        if conn.trailing_data[0]:
            raise InvariantBroken(f"{who}: bytes after the refusal: {conn.trailing_data[0]!r}")
    return answers


def _ask(conn: h11.Connection, client: glue.Client, who: str, method: str, upgrade: bool):
    headers = [("host", "x")] + ([("connection", "upgrade"), ("upgrade", "fuzz")] if upgrade else [])
    conn.send(h11.Request(method=method, target="/", headers=headers))
    conn.send(h11.EndOfMessage())
    return _read_answer(conn, client, who)


def _read_answer(conn: h11.Connection, client: glue.Client, who: str) -> tuple[Answer | None, bool]:
    """One response (None when there is none, or only part of one), and whether it switched."""
    answer = None
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as error:
            if client.transport.aborted:
                return None, False  # a reset: the client knows the response is incomplete
            if answer is None and not conn.trailing_data[0]:
                return None, False  # closed before answering: allowed (at most one response)
            raise InvariantBroken(f"{who} cannot parse the proxy's output ({error}): {bytes(client.transport.out)!r}")
        kind = type(event)
        if event is h11.NEED_DATA or kind is h11.ConnectionClosed:
            return None, False
        if event is h11.PAUSED:  # switched protocols: the rest is the tunnel's
            return Answer(101, False, b""), True
        if kind is h11.Response:
            answer = Answer(event.status_code, any(name == b"x-echo" for name, _ in event.headers), b"")
        elif kind is h11.Data:
            body += event.data
        elif kind is h11.EndOfMessage:
            answer.body = bytes(body)
            return answer, False


def _call(method, *args) -> None:
    try:
        method(*args)
    except Exception as error:
        raise InvariantBroken(f"{method.__qualname__} raised {type(error).__name__}: {error}") from error


def _describe(context: dict) -> str:
    error = context.get("exception")
    return f"{context.get('message')}: {type(error).__name__}: {error}" if error else str(context.get("message"))
