"""Envoy access-log formats (pymesh.telemetry.access_format): Istio's default text line, text
formats and JSON labels, Envoy's "-" / null for unset values."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pymesh.telemetry import access_format as af

RECORD = af.Record(start_time=1700000000.25, method="GET", path="/a?b=1", authority="svc.local", protocol="HTTP/1.1",
                   response_code=503, response_flags="UF", bytes_received=5, bytes_sent=7, duration_ms=12.7,
                   upstream_host="10.0.0.1:80", upstream_cluster="outbound|80||svc.local",
                   downstream_remote_address="127.0.0.1:5555", route_name="default", request_id="rid",
                   headers={"user-agent": "curl/8", "x-b3-traceid": "abc"})


def test_istio_default_text_line():
    line = af.text_formatter("")(RECORD)
    assert line == ('[2023-11-14T22:13:20.250Z] "GET /a?b=1 HTTP/1.1" 503 UF - - "-" 5 7 12 - "-" "curl/8" "rid" '
                    '"svc.local" "10.0.0.1:80" outbound|80||svc.local - - 127.0.0.1:5555 - default\n')


@pytest.mark.parametrize("text, expected", [
    ("%RESPONSE_CODE% %REQ(:AUTHORITY)%", "503 svc.local\n"),
    ("%REQ(X-B3-TRACEID)% %REQ(X-MISSING)%\n", "abc -\n"),
    ("%REQ(USER-AGENT):4% %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", "curl 127.0.0.1\n"),
    ("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "/a?b=1\n"),
])
def test_text_formats(text, expected):
    assert af.text_formatter(text)(RECORD) == expected


def test_json_labels_keep_types_and_null_unset():
    labels = (("code", "%RESPONSE_CODE%"), ("agent", "%REQ(USER-AGENT)%"), ("details", "%RESPONSE_CODE_DETAILS%"),
              ("both", "%REQ(:METHOD)% %RESPONSE_CODE%"), ("duration", "%DURATION%"))
    assert json.loads(af.json_formatter(labels)(RECORD)) == {
        "code": 503, "agent": "curl/8", "details": None, "both": "GET 503", "duration": 12}


@pytest.mark.parametrize("text, problem", [
    ("%NOT_AN_OPERATOR%", "unknown command operator %NOT_AN_OPERATOR%"),
    ("%REQ()%", "needs a header name"),
])
def test_refused(text, problem):
    assert problem in af.check(text)


@pytest.mark.parametrize("text", [
    "%DURATION:" + "9" * 5000 + "%",  # int() raised ValueError out of check(): the load failed unexplained
    "%REQ(" + "a" * 300 + ")%",
    "%" + "A" * 100 + "%",
])
def test_operators_past_the_bounds_are_literal_text(text):
    assert af.check(text) is None
    assert af.text_formatter(text)(RECORD) == text + "\n"


def test_hostile_formats_compile_in_linear_time():
    """A megabyte of "%A(" took hours (every one rescanned the rest of the text for its ")");
    the child is killed if it still runs after a minute."""
    script = ("from pymesh.telemetry import access_format as af\n"
              "for text in ('%A(' * 350_000, '%A(' * 350_000 + ')', '%A:' * 350_000, '%REQ(' * 200_000):\n"
              "    assert af.check(text) is None\n"
              "assert 'unknown command operator %A%' in af.check('%A(' * 350_000 + ')%')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_headers_used():
    assert af.headers_used(af.ISTIO_TEXT_FORMAT) == {"x-envoy-original-path", "x-forwarded-for", "user-agent"}
