"""examples/filters/sampling.py through a real proxy: the decision goes upstream in x-sampled,
the same for the same request id, for about the configured share of ids."""

from examples.filters.sampling import sampled
from filter_bed import deploy, example  # noqa: F401  (deploy: the fixture)
from proxy_harness import curl

IDS = [f"sampling-test-{n}" for n in range(24)]


def test_the_decision_follows_the_request_id(deploy, upstreams, via):
    app = upstreams("v1")
    bed = deploy({"v1": app}, [example("sampling.yaml", percentage=50)])
    for request_id in IDS + IDS[:4]:  # the first four twice: the same id, the same decision
        assert curl(bed.port, "/", *via, "-H", f"x-request-id: {request_id}").status == 200
    received = app.wait_requests(len(IDS) + 4)
    decisions = [(r.header("x-request-id"), r.header("x-sampled")) for r in received]
    expected = [(i, "1" if sampled(i, 50) else "0") for i in IDS + IDS[:4]]
    assert decisions == expected
    chosen = sum(sampled(i, 50) for i in IDS + IDS[:4])
    assert 0 < chosen < len(expected)  # the ids exercise both decisions
    assert bed.filter_metric("sampled", "default/sampling") == chosen
    assert bed.filter_metric("decided", "default/sampling") == len(expected)


def test_a_client_cannot_choose_the_decision(deploy, upstreams, via):
    app = upstreams("v1")
    bed = deploy({"v1": app}, [example("sampling.yaml", percentage=0)])
    assert curl(bed.port, "/", *via, "-H", "x-sampled: 1").status == 200
    [received] = app.wait_requests(1)
    assert received.header_all("x-sampled") == ["0"]
