"""pymesh's HTTP/2 codec against `h2` as the real peer, in memory: every scenario runs once between
two h2 endpoints (the reference world) and once with pymesh's codec on one side, and what the
applications on both sides saw must be the same (see h2_peers.Log)."""

from __future__ import annotations

import pytest

from h2_peers import CodecPeer, RefPeer, pump, request, response
from pymesh.http.h2_frames import CANCEL, INTERNAL_ERROR, NO_ERROR

def get_no_body(c, s):
    sid = c.new_stream()
    c.send_head(sid, request(extra=[(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"accept", b"*/*")]), end_stream=True)
    pump(c, s)
    s.send_head(sid, response(extra=[(b"content-length", b"5")]))
    s.send_data(sid, b"hello", end_stream=True)
    pump(c, s)


def post_with_trailers(c, s):
    sid = c.new_stream()
    c.send_head(sid, request(b"POST", b"/pkg.Svc/Call", [(b"te", b"trailers")]))
    c.send_data(sid, b"q" * 5000, end_stream=True, trailers=[(b"grpc-timeout", b"1S")])
    pump(c, s)
    s.send_head(sid, response())
    s.send_data(sid, b"r" * 7000, end_stream=True, trailers=[(b"grpc-status", b"0"), (b"grpc-message", b"ok")])
    pump(c, s)


def large_bodies(c, s):
    """Bodies far beyond every initial window: the windows reopen as the receivers acknowledge."""
    sid = c.new_stream()
    c.send_head(sid, request(b"PUT", b"/blob"))
    c.send_data(sid, bytes(range(256)) * 4000, end_stream=True)  # ~1 MiB
    pump(c, s)
    s.send_head(sid, response())
    s.send_data(sid, b"z" * (3 * 1024 * 1024 + 17), end_stream=True)
    pump(c, s)


def many_streams(c, s):
    """50 concurrent streams whose bodies interleave on the wire, answered in reverse order."""
    ids = []
    for index in range(50):
        ids.append(c.new_stream())
        c.send_head(ids[-1], request(b"POST", b"/n/%d" % index))
        c.send_data(ids[-1], b"%d;" % index * 3000, end_stream=True)
        if index % 7 == 0:
            pump(c, s)
    pump(c, s)
    for sid in reversed(ids):
        s.send_head(sid, response())
        s.send_data(sid, b"<%d>" % sid * 5000, end_stream=True)
    pump(c, s)


def upload_started(c, s) -> int:
    """A POST whose body has begun: the stream both sides will reset."""
    sid = c.new_stream()
    c.send_head(sid, request(b"POST", b"/upload"))
    c.send_data(sid, b"a" * 1000)
    pump(c, s)
    return sid


def client_resets(c, s):
    c.reset(upload_started(c, s), CANCEL)
    pump(c, s)
    exchange(c, s)


def server_resets(c, s):
    sid = upload_started(c, s)
    s.send_head(sid, response())
    s.send_data(sid, b"partial")
    s.reset(sid, INTERNAL_ERROR)
    pump(c, s)


def exchange(c, s):
    """One GET and its empty 200."""
    sid = c.new_stream()
    c.send_head(sid, request(), end_stream=True)
    pump(c, s)
    s.send_head(sid, response(), end_stream=True)
    pump(c, s)


def server_goaway(c, s):
    exchange(c, s)
    s.goaway(NO_ERROR)
    pump(c, s)


def client_goaway(c, s):
    exchange(c, s)
    c.goaway(NO_ERROR)
    pump(c, s)


SCENARIOS = [get_no_body, post_with_trailers, large_bodies, many_streams, client_resets, server_resets,
             server_goaway, client_goaway]


def run(scenario, client, server):
    pump(client, server)
    scenario(client, server)
    return client.log, server.log


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
@pytest.mark.parametrize("side", ["server", "client"])
def test_codec_matches_h2(scenario, side):
    ref_client, ref_server = run(scenario, RefPeer(client=True), RefPeer(client=False))
    if side == "server":
        client, server = run(scenario, RefPeer(client=True), CodecPeer(client=False))
    else:
        client, server = run(scenario, CodecPeer(client=True), RefPeer(client=False))
    assert server.streams == ref_server.streams
    assert client.streams == ref_client.streams
    assert server.connection == ref_server.connection
    assert client.connection == ref_client.connection
    assert ref_server.streams  # the scenario did something


def client_changes_settings(c, s):
    """The receiver shrinks its stream window and grows its frame size in the middle of a body."""
    sid = c.new_stream()
    c.send_head(sid, request(), end_stream=True)
    pump(c, s)
    s.send_head(sid, response())
    s.send_data(sid, b"w" * 200_000, end_stream=True)
    c.change_settings(INITIAL_WINDOW_SIZE=1000, MAX_FRAME_SIZE=20_000)
    pump(c, s)
    c.change_settings(INITIAL_WINDOW_SIZE=300_000)
    second = c.new_stream()
    c.send_head(second, request(), end_stream=True)
    pump(c, s)
    s.send_head(second, response())
    s.send_data(second, b"v" * 100_000, end_stream=True)
    pump(c, s)


def server_changes_settings(c, s):
    sid = c.new_stream()
    c.send_head(sid, request(b"POST", b"/up"))
    s.change_settings(INITIAL_WINDOW_SIZE=1000, MAX_FRAME_SIZE=20_000, MAX_CONCURRENT_STREAMS=3)
    c.send_data(sid, b"u" * 200_000, end_stream=True)
    pump(c, s)
    s.send_head(sid, response(), end_stream=True)
    pump(c, s)


@pytest.mark.parametrize("scenario, side", [(client_changes_settings, "server"), (server_changes_settings, "client")])
def test_settings_changed_mid_connection(scenario, side):
    test_codec_matches_h2(scenario, side)


def random_scenario(seed: int):
    """A seeded mix of everything above on up to 12 streams at once: requests and answers with
    and without bodies and trailers, bodies in random slices, resets from either side."""
    import random

    def scenario(c, s):
        rng = random.Random(seed)
        phase: dict[int, str] = {}  # stream -> "sending" (client body), "sent", "answering"
        for step in range(80):
            live = [sid for sid, p in phase.items() if p != "done"]
            choice = rng.random()
            if choice < 0.2 and len(live) < 12:
                sid = c.new_stream()
                body = rng.random() < 0.5
                extra = [(b"x-seq", b"%d" % step)] + ([(b"te", b"trailers")] if rng.random() < 0.3 else [])
                c.send_head(sid, request(b"POST" if body else b"GET", b"/r/%d" % step, extra), end_stream=not body)
                phase[sid] = "sending" if body else "sent"
            elif live:
                sid = rng.choice(live)
                size = rng.choice([0, 1, 1000, 20_000, 70_000])
                if rng.random() < 0.05:
                    (c if rng.random() < 0.5 else s).reset(sid, rng.choice([CANCEL, INTERNAL_ERROR]))
                    phase[sid] = "done"
                elif phase[sid] == "sending":
                    last = rng.random() < 0.4
                    trailers = [(b"x-client-trailer", b"%d" % step)] if last and rng.random() < 0.5 else None
                    c.send_data(sid, bytes([step % 256]) * size, end_stream=last, trailers=trailers)
                    phase[sid] = "sent" if last else "sending"
                elif phase[sid] == "sent":
                    s.send_head(sid, response(rng.choice([200, 404, 503]), [(b"x-step", b"%d" % step)]))
                    phase[sid] = "answering"
                else:
                    last = rng.random() < 0.4
                    trailers = [(b"grpc-status", b"%d" % (step % 17))] if last and rng.random() < 0.5 else None
                    s.send_data(sid, bytes([255 - step % 256]) * size, end_stream=last, trailers=trailers)
                    phase[sid] = "done" if last else "answering"
            pump(c, s)

    scenario.__name__ = f"random_{seed}"
    return scenario


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("side", ["server", "client"])
def test_random_scenarios_match_h2(seed, side):
    test_codec_matches_h2(random_scenario(seed), side)
