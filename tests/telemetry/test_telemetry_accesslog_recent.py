"""The access log's bounded ring of recent records, looked up by request id for the admin
port's /access_log (`pymesh explain --request-id`)."""

from __future__ import annotations

from pymesh.telemetry.accesslog import RECENT, AccessLog


def _log(log: AccessLog, request_id: str, status: int = 200) -> None:
    log.log(1_700_000_000.0, "GET", "reviews:9080", "/", "HTTP/1.1", status, "-", 0, 0, 1.0, None, None,
            None, None, request_id, "default", "127.0.0.1:1")


def test_pending_and_flushed_records_are_found_and_the_ring_is_bounded(tmp_path):
    log = AccessLog(path=str(tmp_path / "access.log"))
    _log(log, "pending-1", 503)
    assert [(r["request_id"], r["response_code"]) for r in log.find("pending-1")] == [("pending-1", 503)]
    for i in range(RECENT + 10):
        _log(log, f"id-{i}")
    log.flush()
    assert log.find("pending-1") == [] and log.find("id-5") == []  # fell out of the ring
    assert [r["request_id"] for r in log.find(f"id-{RECENT + 9}")] == [f"id-{RECENT + 9}"]
    assert len(log.recent) == RECENT
    log.close()
