import fcntl
import json
import multiprocessing
import os
import re
import select

import pytest

from pymesh.telemetry import accesslog
from pymesh.telemetry.accesslog import FIELDS, AccessLog, redact_query

START = 1700000000.1234  # 2023-11-14T22:13:20.123Z


def request(log: AccessLog, path="/reviews/1", **overrides):
    fields = dict(start_time=START, method="GET", authority="reviews:9080", path=path,
                  protocol="HTTP/1.1", response_code=200, response_flags="-",
                  bytes_received=0, bytes_sent=295, duration_ms=3.7,
                  upstream_host="10.0.0.5:9080",
                  upstream_cluster="outbound|9080||reviews.default.svc.cluster.local",
                  x_forwarded_for=None, user_agent='curl/8.0 "quoted"',
                  request_id="2f1c5a3e-0d5b-4a3e-9f61-0a7d2c1b9e11", route_name="default",
                  downstream_remote_address="10.0.0.9:51234", attempt_count=2)
    fields.update(overrides)
    log.log(**fields)


def lines(path) -> list[str]:
    with open(path) as f:
        return f.read().splitlines()


def test_json_line_has_istio_fields(tmp_path):
    out = tmp_path / "access.log"
    log = AccessLog("json", str(out))
    request(log)
    log.close()
    [line] = lines(out)
    entry = json.loads(line)
    assert tuple(entry) == FIELDS
    assert entry == {
        "start_time": "2023-11-14T22:13:20.123Z",
        "method": "GET",
        "authority": "reviews:9080",
        "path": "/reviews/1",
        "protocol": "HTTP/1.1",
        "response_code": 200,
        "response_flags": "-",
        "bytes_received": 0,
        "bytes_sent": 295,
        "duration": 3,
        "upstream_host": "10.0.0.5:9080",
        "upstream_cluster": "outbound|9080||reviews.default.svc.cluster.local",
        "x_forwarded_for": None,
        "user_agent": 'curl/8.0 "quoted"',
        "request_id": "2f1c5a3e-0d5b-4a3e-9f61-0a7d2c1b9e11",
        "route_name": "default",
        "downstream_remote_address": "10.0.0.9:51234",
        "upstream_request_attempt_count": 2,
        "requested_server_name": None,
        "downstream_peer_uri_san": None,
        "downstream_local_uri_san": None,
        "downstream_tls_version": None,
    }


class _Tls:  # a ConnectionInfo's TLS facts, as an mTLS handshake fills them
    tls = True
    sni = "outbound_.9080_._.reviews.default.svc.cluster.local"
    peer_identity = "spiffe://cluster.local/ns/default/sa/productpage"
    local_identity = "spiffe://cluster.local/ns/default/sa/reviews"
    tls_version = "TLSv1.3"


def test_tls_fields_come_from_the_connection(tmp_path):
    out = tmp_path / "access.log"
    log = AccessLog("json", str(out))
    request(log, requested_server_name=_Tls.sni, connection=_Tls())
    log.log_tcp(START, "10.0.0.5:9080", "inbound|9080||", "10.0.0.9:51234", 1, 2, 3.0, "-", _Tls.sni, _Tls())
    log.close()
    for line in lines(out):
        entry = json.loads(line)
        assert (entry["requested_server_name"], entry["downstream_peer_uri_san"], entry["downstream_local_uri_san"],
                entry["downstream_tls_version"]) == (_Tls.sni, _Tls.peer_identity, _Tls.local_identity, "TLSv1.3")


def test_start_time_is_rfc3339_with_ms_across_seconds(tmp_path):
    out = tmp_path / "access.log"
    log = AccessLog("json", str(out))
    for t in (START, START + 0.5, START + 1.0, 0.0):
        request(log, start_time=t)
    log.close()
    times = [json.loads(l)["start_time"] for l in lines(out)]
    assert times == ["2023-11-14T22:13:20.123Z", "2023-11-14T22:13:20.623Z",
                     "2023-11-14T22:13:21.123Z", "1970-01-01T00:00:00.000Z"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", t) for t in times)


def test_non_ascii_and_control_characters_stay_valid_json(tmp_path):
    out = tmp_path / "access.log"
    log = AccessLog("json", str(out))
    request(log, path="/caf\u00e9/\n\x00", user_agent="\u65e5\u672c")
    log.close()
    [line] = lines(out)
    assert line.isascii()
    entry = json.loads(line)
    assert entry["path"] == "/caf\u00e9/\n\x00" and entry["user_agent"] == "\u65e5\u672c"


def test_tcp_line_uses_the_same_fields(tmp_path):
    out = tmp_path / "access.log"
    log = AccessLog("json", str(out))
    log.log_tcp(START, "10.0.0.5:3306", "outbound|3306||db.default.svc.cluster.local",
                "10.0.0.9:40000", bytes_received=100, bytes_sent=2000, duration_ms=1500.9,
                response_flags="-", requested_server_name="db.example.com")
    log.close()
    [entry] = [json.loads(l) for l in lines(out)]
    assert tuple(entry) == FIELDS
    assert entry["requested_server_name"] == "db.example.com"
    assert entry["method"] is None and entry["path"] is None and entry["protocol"] is None
    assert (entry["bytes_received"], entry["bytes_sent"], entry["duration"]) == (100, 2000, 1500)
    assert entry["upstream_host"] == "10.0.0.5:3306"


def test_log_only_appends_until_flush_or_max_lines(tmp_path):
    out = tmp_path / "access.log"
    log = AccessLog("json", str(out), max_lines=3)
    request(log)
    request(log)
    assert lines(out) == []
    log.flush()
    assert len(lines(out)) == 2
    for _ in range(3):
        request(log)
    assert len(lines(out)) == 5  # the third append reached max_lines
    log.close()


def test_off_writes_nothing(tmp_path):
    out = tmp_path / "access.log"
    log = AccessLog("off", str(out))
    request(log)
    log.log_tcp(START, None, None, "10.0.0.9:1", 0, 0, 0, "-")
    log.flush()
    log.close()
    assert not out.exists()


def test_bad_format_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="format"):
        AccessLog("text", str(tmp_path / "x"))


def test_pipe_writes_are_whole_lines_within_pipe_buf(monkeypatch):
    r, w = os.pipe()
    log = AccessLog("json", f"/proc/self/fd/{w}")
    writes = []
    real_write = os.write
    monkeypatch.setattr(accesslog.os, "write", lambda fd, data: writes.append(bytes(data)) or
                        real_write(fd, data))
    for i in range(80):  # all of it must fit the pipe (64 KiB), which is read only at the end
        request(log, path=f"/item/{i}")
    request(log, path="/" + "x" * 5000)  # longer than PIPE_BUF: written alone
    log.flush()
    monkeypatch.undo()
    log.close()
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    assert len(writes) > 1
    assert all(w.endswith(b"\n") for w in writes)
    assert all(len(w) <= select.PIPE_BUF for w in writes[:-1])
    assert writes[-1].count(b"\n") == 1 and len(writes[-1]) > select.PIPE_BUF
    paths = [json.loads(l)["path"] for l in data.splitlines()]
    assert paths == [f"/item/{i}" for i in range(80)] + ["/" + "x" * 5000]


def test_full_nonblocking_pipe_keeps_lines_whole():
    r, w = os.pipe()
    capacity = fcntl.fcntl(w, 1032)  # F_GETPIPE_SZ
    log = AccessLog("json", f"/proc/self/fd/{w}", max_lines=1 << 20)
    os.set_blocking(log._fd, False)  # as if stdout were someone's non-blocking pipe
    count = capacity // 200 * 2  # about twice what the pipe holds
    for i in range(count):
        request(log, path=f"/item/{i}")
    log.flush()  # fills the pipe; the rest waits for the next flush
    data = b""
    while True:
        data += os.read(r, 1 << 20)
        if not log._backlog:
            break
        log.flush()
    log.close()
    os.close(w)
    os.close(r)
    assert log.dropped == 0
    assert [json.loads(l)["path"] for l in data.splitlines()] == [f"/item/{i}"
                                                                   for i in range(count)]


def _child_logs(log):
    request(log, path="/child")
    log.close()


def test_lines_pending_at_fork_are_written_once(tmp_path):
    out = tmp_path / "access.log"
    log = AccessLog("json", str(out))
    request(log, path="/parent")
    p = multiprocessing.get_context("fork").Process(target=_child_logs, args=(log,))
    p.start()
    p.join()
    assert p.exitcode == 0
    log.close()
    assert sorted(json.loads(l)["path"] for l in lines(out)) == ["/child", "/parent"]


@pytest.mark.parametrize("path, expected", [
    ("/q?access_token=abc.def.ghi", "/q?access_token=REDACTED"),
    ("/q?a=1&access_token=x&b=2#frag", "/q?a=1&access_token=REDACTED&b=2#frag"),
    ("/q?access%5Ftoken=x&access_token", "/q?access%5Ftoken=REDACTED&access_token"),  # encoded name; no value
    ("/q?other=x", "/q?other=x"),
    ("/plain", "/plain"),
])
def test_redact_query_hides_token_parameters(path, expected):
    assert redact_query(path, frozenset({"access_token"})) == expected


def test_repeating_fields_are_cached_but_bounded_and_lines_stay_exact(tmp_path, monkeypatch):
    """Templates of repeating fields are escaped once; a flood of distinct hostile values (more
    than the cache holds, with %-directives that the template must not read as its own) still
    gives each line its own values, escaped, and the cache stays bounded."""
    monkeypatch.setattr(accesslog, "_MAX_TEMPLATES", 8)
    out = tmp_path / "access.log"
    log = AccessLog("json", str(out))
    agents = [f'evil "{i}" \\ \x01\udcff %s %d %% %(x)s' for i in range(30)]
    for i, agent in enumerate(agents):
        request(log, path=f"/p{i % 3}", user_agent=agent, request_id=f'id"{i}' if i % 2 else "")
    log.close()
    entries = [json.loads(line) for line in lines(out)]
    assert [e["user_agent"] for e in entries] == agents
    assert [e["path"] for e in entries] == [f"/p{i % 3}" for i in range(30)]
    assert [e["request_id"] for e in entries] == [f'id"{i}' if i % 2 else None for i in range(30)]
    assert len(log._templates) <= 8
    fresh = AccessLog("json", str(tmp_path / "other.log"))
    assert [log.format(r) for r in log.recent] == [fresh.format(r) for r in log.recent]


@pytest.mark.parametrize("data, size, pieces", [
    (b"", 8, []),
    (b"ab\n", 8, [b"ab\n"]),
    (b"ab\ncd\nef\n", 6, [b"ab\ncd\n", b"ef\n"]),
    (b"ab\ncd\nef\n", 3, [b"ab\n", b"cd\n", b"ef\n"]),
    (b"ab\n0123456789\ncd\n", 6, [b"ab\n", b"0123456789\n", b"cd\n"]),  # a long line alone
    (b"0123456789\n", 4, [b"0123456789\n"]),
    (b"abcdef\n", 7, [b"abcdef\n"]),
])
def test_whole_lines_cuts_after_newlines_within_size(data, size, pieces):
    assert accesslog._whole_lines(data, size) == pieces


def test_long_templates_are_not_cached(tmp_path):
    """A hostile 10 KB user agent is logged whole but not kept in the cache (memory stays bounded)."""
    log = AccessLog("json", str(tmp_path / "access.log"))
    request(log, user_agent="u" * 10000)
    log.flush()
    assert len(log._templates) == 0
    request(log, user_agent="u" * 100)
    log.close()
    assert len(log._templates) == 1
    assert [json.loads(line)["user_agent"] for line in lines(tmp_path / "access.log")] == ["u" * 10000, "u" * 100]
