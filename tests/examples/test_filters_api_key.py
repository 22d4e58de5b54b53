"""examples/filters/api_key.py through a real proxy: 401 without a known key, the key never
reaches the app, the filter's counters on /metrics."""

from filter_bed import deploy, example  # noqa: F401  (deploy: the fixture)
from proxy_harness import curl

FILTER = "default/api-key"


def test_a_request_without_a_known_key_is_answered_401(deploy, upstreams, via):
    app = upstreams("v1")
    bed = deploy({"v1": app}, [example("api-key.yaml")])

    missing = curl(bed.port, "/data", *via)
    wrong = curl(bed.port, "/data", *via, "-H", "x-api-key: demo-key-3")
    assert (missing.status, wrong.status) == (401, 401), (missing, wrong)
    assert missing.header("www-authenticate") == 'ApiKey header="x-api-key"'
    assert missing.body == b"missing or unknown API key\n"
    assert app.count() == 0  # nothing went upstream

    good = curl(bed.port, "/data", *via, "-H", "x-api-key: demo-key-2")
    assert good.status == 200 and good.body == b"v1 GET /data\n", good
    [received] = app.wait_requests(1)
    assert received.header("x-api-key") is None  # strip: the app never sees a key
    assert bed.filter_metric("rejected", FILTER) == 2 and bed.filter_metric("accepted", FILTER) == 1
