"""The engine that runs users' Python filters (pymesh.filters) in the request path.

Built once per snapshot (`build`): one filter instance per FilterSpec, each wrapped in a `Step`
that calls its hooks with the failure policy and the blocking budget around them, and per
listener direction a `UserChain`: the steps by phase for `chains_for` to place among the built-in
filters, plus an `Enter` step that leads the chain and, where a filter has request body or end
hooks, a `Leave` step that ends it.

Nothing of this runs for a request whose chain has no user filter: the built-in chain tuples are
then exactly what they were. A chain that has them starts with `Enter`, which gives the exchange
its `ProxyStream`; only where a filter overrides a request body or end hook does it turn the
exchange into a `BodyExchange` (the same object, a subclass without slots of its own, so the
assignment is free), and only where one has response hooks does it wrap the downstream in a
`FilteredDownstream` (which hooks a class overrides is checked once per class, not per request).

Failures stay with their request: an exception (or a result a hook may not return) in a
FAIL_CLOSE filter answers 500 with response flag PFE, or resets the client once the response
started; in a FAIL_OPEN filter the request goes on as if the hook had returned CONTINUE. Both
are counted per filter and logged at most every LOG_INTERVAL seconds per filter. Each hook call
is timed (perf_counter, user filters only); one that held the loop longer than the budget is
counted and logged with the filter's name.
"""

from __future__ import annotations

import logging
import time
import weakref
from dataclasses import dataclass

from pymesh import filters as api
from pymesh.http.message import Trailers
from pymesh.policy import flags
from pymesh.proxy.exchange import BODY_HIGH_WATER, Exchange
from pymesh.proxy.interfaces import PAUSE
from pymesh.proxy.local_reply import LocalReply
from pymesh.routing.python_filters import MODES
from pymesh.telemetry import filter_metrics

log = logging.getLogger("pymesh.proxy.filters")

DEFAULT_BUDGET = 0.050  # seconds a hook may hold the event loop before it is reported
LOG_INTERVAL = 10.0  # seconds between two log lines about one filter's failures (or blocking)
FAILED_BODY = b"python filter failed"
_HOOKS = ("on_request_head", "on_request_data", "on_request_end", "on_response_head", "on_response_data",
          "on_response_end")
_FAILED = object()  # a hook's result after it raised or returned what it may not


class FilterFailed(Exception):
    """A hook returned something its contract does not allow."""


# --- compiled once per snapshot ---------------------------------------------------------------


def overridden(cls: type) -> frozenset[str]:
    """The hooks `cls` defines itself (HttpFilter's defaults do nothing and are never called)."""
    return frozenset(h for h in _HOOKS if getattr(cls, h, None) is not getattr(api.HttpFilter, h))


def ports_for(spec: api.FilterSpec, direction: str) -> frozenset[int] | None | bool:
    """False: the filter never applies in this direction; None: every port; else those ports."""
    if not spec.match:
        return None
    chosen = [m for m in spec.match if m.mode in MODES[direction]]
    if not chosen:
        return False
    if any(not m.ports for m in chosen):
        return None
    return frozenset(p for m in chosen for p in m.ports)


class Step:
    """One filter instance in one direction's chain: its request-head place among the built-in
    filters (`on_request`, a RequestFilter) and the guarded calls of all its hooks."""

    __slots__ = ("spec", "instance", "hooks", "ports", "fail_open", "budget", "stats", "_logged", "head")

    def __init__(self, spec: api.FilterSpec, instance, ports, budget: float, stats: "FilterStats") -> None:
        self.spec = spec
        self.instance = instance
        self.hooks = overridden(type(instance)) if instance is not None else frozenset(_HOOKS)
        self.ports = ports
        self.fail_open = spec.fail_strategy == api.FAIL_OPEN
        self.budget = budget
        self.stats = stats
        self._logged = -LOG_INTERVAL
        self.head = instance.on_request_head if instance is not None else _not_set_up(spec)

    def applies(self, port: int) -> bool:
        return self.ports is None or port in self.ports

    def on_request(self, exchange, request):
        """The request-head hook, in the built-in chain (only steps that have one are placed
        there); `call` written out, as this runs for every request of the chain."""
        if self.ports is not None and exchange.listener.port not in self.ports:
            return None
        stream = exchange.user_stream
        started = time.perf_counter()
        try:
            result = self.head(stream)
        except Exception as error:  # a user's bug must not reach the proxy's callbacks
            result = _FAILED
            self.failed("on_request_head", error)
        if time.perf_counter() - started > self.budget:
            self.blocked("on_request_head", time.perf_counter() - started)
        if result is None:
            return None
        if result is api.PAUSE:
            stream.paused = self
            return PAUSE
        reply = result if result is _FAILED else self.local_reply(result, "on_request_head")
        if reply is _FAILED:
            return None if self.fail_open else failed_reply()
        return reply

    def call(self, stream, hook: str, *args):
        """The hook's result, or _FAILED (counted, logged) when it raised. Timed."""
        started = time.perf_counter()
        try:
            if self.instance is None:
                _not_set_up(self.spec)()
            result = getattr(self.instance, hook)(stream, *args)
        except Exception as error:  # a user's bug must not reach the proxy's callbacks
            result = _FAILED
            self.failed(hook, error)
        elapsed = time.perf_counter() - started
        if elapsed > self.budget:
            self.blocked(hook, elapsed)
        return result

    def local_reply(self, result, hook: str):
        """A hook's LocalReply as the proxy's (a bad one, or another result, is a failure)."""
        try:
            if not isinstance(result, api.LocalReply):
                raise FilterFailed(f"returned {type(result).__name__}, not None, a LocalReply or PAUSE")
            return convert_reply(result)
        except (FilterFailed, ValueError, TypeError) as error:
            self.failed(hook, error)
            return _FAILED

    def failed(self, hook: str, error: Exception) -> None:
        self.stats.error(self.spec.name, hook, self.fail_open)
        now = time.monotonic()
        if now - self._logged >= LOG_INTERVAL:
            self._logged = now
            log.warning("python filter %s (%s) %s failed (%s): %s: %s", self.spec.name, self.spec.module, hook,
                        "FAIL_OPEN: continuing" if self.fail_open else "FAIL_CLOSE: 500 PFE",
                        type(error).__name__, error, exc_info=not isinstance(error, FilterFailed))

    def blocked(self, hook: str, elapsed: float) -> None:
        self.stats.blocked(self.spec.name, hook)
        now = time.monotonic()
        if now - self._logged >= LOG_INTERVAL:
            self._logged = now
            log.warning("python filter %s %s held the event loop for %.0f ms (budget %.0f ms)",
                        self.spec.name, hook, elapsed * 1000, self.budget * 1000)


def _not_set_up(spec: api.FilterSpec):
    def hook(*_args):
        raise FilterFailed(f"filter {spec.name} could not be set up")
    return hook


def convert_reply(reply: api.LocalReply) -> LocalReply:
    body = reply.body.encode() if isinstance(reply.body, str) else bytes(reply.body)
    pairs = reply.headers.items() if hasattr(reply.headers, "items") else reply.headers
    headers = tuple(api.header_field(name, value) for name, value in pairs)
    if not 100 <= int(reply.status) <= 599:
        raise ValueError(f"status {reply.status} is not an HTTP status")
    return LocalReply(int(reply.status), flags.NONE, body, headers, grpc_status=reply.grpc_status)


def failed_reply() -> LocalReply:
    return LocalReply(500, flags.PFE, FAILED_BODY)


class FilterStats:
    """The engine's own per-filter counters (pymesh_python_filter_*), in the metrics store."""

    def __init__(self, store) -> None:
        self.store = store

    def error(self, name: str, hook: str, fail_open: bool) -> None:
        labels = (("filter", name), ("hook", hook), ("fail_strategy", "FAIL_OPEN" if fail_open else "FAIL_CLOSE"))
        self.store.cell(filter_metrics.family("pymesh_python_filter_errors_total", "counter"), labels, 1)[0] += 1

    def blocked(self, name: str, hook: str) -> None:
        labels = (("filter", name), ("hook", hook))
        self.store.cell(filter_metrics.family("pymesh_python_filter_loop_blocked_total", "counter"), labels, 1)[0] += 1


@dataclass(frozen=True)
class View:
    """The steps of one chain that apply on one port, by hook (response hooks reversed). Only
    with request body or end hooks (`body`) does the exchange pass its body through the
    filters; only with response hooks (`wraps`) is its downstream wrapped."""

    request_data: tuple
    request_end: tuple
    response_head: tuple
    response_data: tuple
    response_end: tuple

    @property
    def body(self) -> bool:
        return bool(self.request_data or self.request_end)

    @property
    def wraps(self) -> bool:
        return bool(self.response_head or self.response_data or self.response_end)


class UserChain:
    """One listener direction's user filters, by phase, and the views per port."""

    def __init__(self, steps: tuple[Step, ...]) -> None:
        self.steps = steps
        self.by_phase = {phase: tuple(s for s in steps if s.spec.phase == phase and "on_request_head" in s.hooks)
                         for phase in api.PHASES}
        self._views: dict[int, View] = {}
        self.enter = Enter(self, self.view(0) if all(s.ports is None for s in steps) else None)
        # the body is held while the head's hooks run only where a filter has body hooks
        self.leave = (Leave(),) if any({"on_request_data", "on_request_end"} & s.hooks for s in steps) else ()

    def view(self, port: int) -> View:
        view = self._views.get(port)
        if view is None:
            on = [s for s in self.steps if s.applies(port)]
            back = on[::-1]
            view = self._views[port] = View(
                tuple(s for s in on if "on_request_data" in s.hooks),
                tuple(s for s in on if "on_request_end" in s.hooks),
                tuple(s for s in back if "on_response_head" in s.hooks),
                tuple(s for s in back if "on_response_data" in s.hooks),
                tuple(s for s in back if "on_response_end" in s.hooks))
        return view


def build(specs: dict, store, budget: float = DEFAULT_BUDGET) -> dict[str, UserChain]:
    """Each direction's UserChain for a snapshot's FilterSpecs (`Snapshot.python_filters`);
    directions without any filter are absent. Within a phase the higher priority runs first,
    equal priorities in the order given. A filter whose construction (or `setup`) raises is
    logged and kept as a step that fails every request it sees, by its failStrategy."""
    stats = FilterStats(store)
    instances: dict[api.FilterSpec, object] = {}
    chains = {}
    for direction, given in specs.items():
        steps = []
        ordered = sorted(given, key=lambda s: (api.PHASES.index(s.phase) if s.phase in api.PHASES else 3, -s.priority))
        for spec in ordered:
            ports = ports_for(spec, direction)
            if ports is False:
                continue
            if spec not in instances:
                instances[spec] = instantiate(spec, store)
            steps.append(Step(spec, instances[spec], ports, budget, stats))
        if steps:
            chains[direction] = UserChain(tuple(steps))
    return chains


def instantiate(spec: api.FilterSpec, store):
    metrics = api.Metrics(filter_metrics.cells_for(store, spec.name))
    try:
        return spec.filter_class(spec.name, spec.config, metrics)
    except Exception:
        log.exception("python filter %s (%s) could not be set up: its requests fail (%s)", spec.name, spec.module,
                      spec.fail_strategy)
        return None


# --- per request ------------------------------------------------------------------------------


class Enter:
    """First in a chain with user filters: the exchange gets its ProxyStream (and becomes a
    BodyExchange when a filter has request body or end hooks)."""

    __slots__ = ("chain", "fixed")

    def __init__(self, chain: UserChain, fixed: View | None) -> None:
        self.chain = chain
        self.fixed = fixed  # the view when no filter of the chain matches by port

    def on_request(self, exchange, request):
        view = self.fixed if self.fixed is not None else self.chain.view(exchange.listener.port)
        stream = exchange.user_stream = ProxyStream(exchange, view)
        if view.body:
            exchange.__class__ = BodyExchange
            stream.start_body(exchange, request)
        if view.wraps:
            exchange.downstream = FilteredDownstream(exchange.downstream, stream)
        return None


class Leave:
    """Last in the chain: the request's head is settled; body held meanwhile goes on."""

    __slots__ = ()

    def on_request(self, exchange, request):
        if exchange.__class__ is not BodyExchange:  # no body hooks on this port
            return None
        stream = exchange.user_stream
        stream.head_done = True
        if stream.early:
            early, stream.early = stream.early, None
            data = b"".join(early)
            if stream.view.request_data:
                data = stream.run_data(stream.view.request_data, "on_request_data", data, False)
                if data is None:
                    return None
            if data:  # counted when it arrived; the chain is still running, so no connection yet
                exchange.chunks.append(data)
                exchange.chunks_bytes += len(data)
        held, stream.held = stream.held, None
        for data in held or ():
            exchange.on_request_data(data)
            if exchange.done:
                return None
        if stream.held_end is not None:
            trailers, stream.held_end = stream.held_end, None
            exchange.on_request_end(trailers)
        return None


class ProxyStream(api.Stream):
    """The Stream the hooks get (see pymesh.filters.Stream)."""

    __slots__ = ("_ref", "view", "state", "request_headers", "response_status", "response_headers", "paused",
                 "head_done", "held", "held_bytes", "held_end", "early", "rebodied", "response_body", "_connection")

    def __init__(self, exchange, view: View) -> None:
        # weak: the exchange holds its stream (and a wrapper that holds it), and a cycle per
        # request would be left to the garbage collector; the downstream holds the exchange
        self._ref = weakref.ref(exchange)
        self.view = view
        self.state = {}
        self.request_headers = api.Headers(exchange.upstream_request.headers)
        self.response_status = None
        self.response_headers = None
        self.paused = None  # the Step that paused the chain
        self._connection = None

    def start_body(self, exchange, request) -> None:
        """A BodyExchange's: the request body is held until the head's hooks all ran (`Leave`)."""
        self.head_done = False
        self.held = []  # request body that arrived before the head's hooks all ran
        self.held_bytes = 0
        self.held_end = None
        self.early = None  # body the downstream delivered before the chain began (HTTP/2)
        self.rebodied = False
        if self.view.request_data and request.has_body:
            request.length = None  # a filter may change the body's length: it goes on streamed
            self.rebodied = True
        if exchange.chunks or exchange.request_done:
            self.adopt_early_body(exchange)

    @property
    def _exchange(self):
        exchange = self._ref()
        if exchange is None:
            raise RuntimeError("the request has ended")
        return exchange

    method = property(lambda self: self._exchange.upstream_request.method)
    route_name = property(lambda self: self._exchange.route.name)
    cluster_name = property(lambda self: self._exchange.weighted.cluster)
    direction = property(lambda self: self._exchange.listener.direction)
    listener_name = property(lambda self: self._exchange.listener.name)
    http_version = property(lambda self: self._exchange.head.http_version)
    request_id = property(lambda self: self._exchange.request_id)

    @property
    def path(self) -> str:
        return self._exchange.upstream_request.target

    @path.setter
    def path(self, value: str) -> None:
        if not value.startswith("/") or any(c in value for c in " \r\n\x00"):
            raise ValueError(f"path {value!r}: an origin-form target starts with / and has no spaces")
        self._exchange.upstream_request.target = value

    @property
    def authority(self) -> str:
        return self._exchange.upstream_request.authority

    @authority.setter
    def authority(self, value: str) -> None:
        if not value or any(c in value for c in " \r\n\x00/"):
            raise ValueError(f"authority {value!r} is not a host[:port]")
        self._exchange.upstream_request.authority = value

    @property
    def connection(self) -> api.Connection:
        if self._connection is None:
            self._connection = api.Connection(self._exchange.head.connection)
        return self._connection

    def resume(self) -> None:
        exchange = self._ref()
        if exchange is not None:  # else the request has ended: nothing to resume
            exchange.runtime.loop.call_soon_threadsafe(self._resume)

    def reply(self, status: int, body: bytes | str = b"", headers=()) -> None:
        reply = convert_reply(api.LocalReply(status, body, headers))  # a bad reply raises to its caller
        exchange = self._ref()
        if exchange is not None:
            exchange.runtime.loop.call_soon_threadsafe(self._reply, reply)

    def fail(self, error: Exception) -> None:
        exchange = self._ref()
        if exchange is not None:  # else the request has ended: nothing to fail
            exchange.runtime.loop.call_soon_threadsafe(self._fail, error)

    def _fail(self, error: Exception) -> None:
        step = self.paused
        exchange = self._ref()
        if step is None or exchange is None or exchange.done:
            return
        step.failed("on_request_head", error)
        if step.fail_open:
            self._resume()
        else:
            self._reply(failed_reply())

    def _resume(self) -> None:
        exchange = self._ref()
        if self.paused is not None and exchange is not None and not exchange.done:
            self.paused = None
            exchange.resume_filters()

    def _reply(self, reply: LocalReply) -> None:
        exchange = self._ref()
        if exchange is None or exchange.done or exchange.committed:
            return
        self.paused = None
        exchange.reply(reply)

    def adopt_early_body(self, exchange) -> None:
        """HTTP/2 delivers a stream's DATA and END of one read before the exchange begins: that
        body is still in the replay buffer, untouched by the filters; take it back to pass it
        through them once the head's hooks have run (`Leave`)."""
        self.early = [piece for piece in exchange.chunks if piece.__class__ is not Trailers]
        ends = [piece.headers for piece in exchange.chunks if piece.__class__ is Trailers]
        exchange.chunks = []
        exchange.chunks_bytes = 0
        if exchange.request_done:
            self.held_end = ends[0] if ends else []

    def run_data(self, steps: tuple, hook: str, data: bytes, end: bool) -> bytes | None:
        """`data` through the data hooks of `steps`: what goes on, or None when a FAIL_CLOSE
        filter failed the exchange (already answered or reset)."""
        for step in steps:
            result = step.call(self, hook, data, end)
            if result is None:
                continue
            if result.__class__ is bytes or isinstance(result, (bytes, bytearray, memoryview)):
                data = bytes(result)
                continue
            if result is not _FAILED:
                if hook == "on_request_data" and isinstance(result, api.LocalReply) and not self._exchange.committed:
                    reply = step.local_reply(result, hook)
                    if reply is not _FAILED:
                        self._exchange.reply(reply)
                        return None
                else:
                    step.failed(hook, FilterFailed(f"returned {type(result).__name__}, not None or bytes"))
            if not step.fail_open:
                fail(self._exchange)
                return None
        return data

    def run_finish(self, data_steps: tuple, data_hook: str, end_steps: tuple, end_hook: str, trailers: list,
                   send) -> bool:
        """A body's end: the data hooks' last call (what they still give goes to `send`), then
        the end hooks; False when a FAIL_CLOSE filter failed the exchange."""
        if data_steps:
            tail = self.run_data(data_steps, data_hook, b"", True)
            if tail is None:
                return False
            if tail:
                send(tail)
        return not end_steps or self.run_end(end_steps, end_hook, trailers)

    def run_end(self, steps: tuple, hook: str, trailers: list) -> bool:
        """The end hooks; False when a FAIL_CLOSE filter failed the exchange."""
        headers = api.Headers(trailers)
        for step in steps:
            result = step.call(self, hook, headers)
            if result is None:
                continue
            if result is not _FAILED:
                step.failed(hook, FilterFailed(f"returned {type(result).__name__}, not None"))
            if not step.fail_open:
                fail(self._exchange)
                return False
        return True


def fail(exchange) -> None:
    """A FAIL_CLOSE filter failed: 500 PFE before the response started, a reset after."""
    if exchange.done:
        return
    if not exchange.committed:
        return exchange.reply(failed_reply())
    exchange._end_attempt()
    exchange._drop_upstream()
    exchange._abort_response(flags.PFE)


class BodyExchange(Exchange):
    """An Exchange whose request body and end pass through the filters' hooks. No slots of its
    own: `Enter` assigns __class__ on a live Exchange, for chains with body or end hooks."""

    __slots__ = ()

    def on_request_data(self, data: bytes) -> None:
        if self.done:  # after the answer (`_finish` let go of the stream): as any exchange
            return Exchange.on_request_data(self, data)
        stream = self.user_stream
        if not stream.head_done:
            stream.held.append(data)
            stream.held_bytes += len(data)
            if stream.held_bytes > BODY_HIGH_WATER:
                self.pause_request_body()
            return
        if stream.view.request_data:
            data = stream.run_data(stream.view.request_data, "on_request_data", data, False)
            if not data:
                return
        Exchange.on_request_data(self, data)

    def on_request_end(self, trailers) -> None:
        if self.done:
            return Exchange.on_request_end(self, trailers)
        stream = self.user_stream
        if not stream.head_done:
            stream.held_end = trailers
            return
        self.request_done = True  # all of it arrived: an answer now needs no reset of the request
        view = stream.view
        if not stream.run_finish(view.request_data if stream.rebodied else (), "on_request_data", view.request_end,
                                 "on_request_end", trailers, lambda tail: Exchange.on_request_data(self, tail)):
            if self.shadows is not None:  # answered at the request's end: its copies never get one
                self._mirror_cancel()
            return
        Exchange.on_request_end(self, trailers)
        if stream.rebodied and not self.head.streamed and self.chunks is not None:
            self.chunks.append(Trailers(trailers))  # a replay frames the now streamed body's end


class FilteredDownstream:
    """The exchange's downstream with the response hooks in front of it; the rest passes."""

    __slots__ = ("inner", "stream", "info")

    def __init__(self, inner, stream: ProxyStream) -> None:
        self.inner = inner
        self.stream = stream
        self.info = inner.info

    def __getattr__(self, name: str):  # the Downstream methods without hooks
        return getattr(self.inner, name)

    def flush_response(self) -> None:
        self.inner.flush_response()

    def exchange_done(self, exchange) -> None:
        self.inner.exchange_done(exchange)

    def send_response_head(self, status: int, headers: list, content_length, has_body: bool) -> None:
        stream = self.stream
        view = stream.view
        stream.response_status = status
        stream.response_headers = api.Headers(headers)
        exchange = stream._exchange
        for step in view.response_head:
            result = step.call(stream, "on_response_head")
            if result is None:
                continue
            reply = result if result is _FAILED else step.local_reply(result, "on_response_head")
            if reply is _FAILED:
                if step.fail_open:
                    continue
                reply = failed_reply()
            exchange.committed = False  # nothing went downstream yet: answer instead
            exchange.reply(reply)
            return
        stream.response_body = has_body
        if view.response_data and has_body:
            content_length = None  # a filter may change the body's length
        self.inner.send_response_head(status, headers, content_length, has_body)

    def send_data(self, data: bytes) -> None:
        exchange = self.stream._ref()
        if exchange is None or exchange.done:
            return
        steps = self.stream.view.response_data
        if steps:
            data = self.stream.run_data(steps, "on_response_data", data, False)
            if not data:
                return
        self.inner.send_data(data)

    def send_end(self, trailers: list) -> None:
        stream = self.stream
        view = stream.view
        if stream.run_finish(view.response_data if stream.response_body else (), "on_response_data", view.response_end,
                             "on_response_end", trailers, self.inner.send_data):
            self.inner.send_end(trailers)


def chain_parts(chains: dict[str, UserChain], direction: str) -> dict[str, tuple] | None:
    """What chains_for places for one direction: {"enter": (Enter,), phase: steps, "leave": (Leave,)}."""
    chain = chains.get(direction)
    if chain is None:
        return None
    return {"enter": (chain.enter,), **chain.by_phase, "leave": chain.leave}


