"""examples/filters/external_check.py through a real proxy: each request waits (PAUSE) for a real
local check service that allows, denies, fails, is slow or is down; a failure goes by the
resource's failStrategy; a check in progress holds only its own request."""

import threading

import pytest

from filter_bed import deploy, example  # noqa: F401  (deploy: the fixture)
from proxy_harness import DEFAULT_WAIT, Reply, curl, free_port

FILTER = "default/external-check"
SLOW = 3.0  # the slow answer's delay, far over the filter's timeout


class CheckService:
    """The answer by the x-user header the filter passes on: allow 200, deny 403, broken 503, slow
    (SLOW seconds late), hold (until `release`)."""

    def __init__(self, upstreams) -> None:
        self.released = threading.Event()
        self.server = upstreams("check", self.answer)

    def answer(self, request) -> Reply:
        user = request.header("x-user")
        if user == "hold":
            self.released.wait(DEFAULT_WAIT)
        status = {"allow": 200, "hold": 200, "deny": 403, "broken": 503}.get(user, 200 if user == "slow" else 401)
        return Reply(status, body=b"checked\n", delay=SLOW if user == "slow" else 0.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/check"


def as_user(port: int, via, user: str, path: str = "/"):
    return curl(port, path, *via, "-H", f"x-user: {user}")


def test_the_service_decides_and_its_failures_close(deploy, upstreams, via):
    app, check = upstreams("v1"), CheckService(upstreams)
    bed = deploy({"v1": app}, [example("external-check.yaml", url=check.url, timeout_ms=300)])

    allowed = as_user(bed.port, via, "allow", "/item?q=1")
    assert allowed.status == 200 and allowed.body == b"v1 GET /item?q=1\n", allowed
    [asked] = check.server.wait_requests(1)
    assert (asked.method, asked.path, asked.header("x-original-method"), asked.header("x-original-uri"),
            asked.header("x-user")) == ("GET", "/check", "GET", "/item?q=1", "allow")

    denied = as_user(bed.port, via, "deny")
    assert (denied.status, denied.body) == (403, b"denied by the check service\n"), denied
    assert as_user(bed.port, via, "nobody").status == 401  # the service's 401 reaches the client
    assert as_user(bed.port, via, "broken").status == 500  # FAIL_CLOSE
    assert as_user(bed.port, via, "slow").status == 500  # no answer within 300 ms: FAIL_CLOSE
    assert app.count() == 1  # only the allowed request went upstream
    metric = bed.filter_metric
    assert (metric("allowed", FILTER), metric("denied", FILTER), metric("failed", FILTER)) == (1, 2, 2)


@pytest.mark.parametrize("strategy, status", [("FAIL_CLOSE", 500), ("FAIL_OPEN", 200)])
def test_a_service_that_is_down_goes_by_the_fail_strategy(deploy, upstreams, via, strategy, status):
    app = upstreams("v1")
    resource = example("external-check.yaml", url=f"http://127.0.0.1:{free_port()}/check")  # nothing listens
    resource["spec"]["failStrategy"] = strategy
    bed = deploy({"v1": app}, [resource])
    assert as_user(bed.port, via, "allow").status == status
    assert app.count() == (1 if strategy == "FAIL_OPEN" else 0)
    assert bed.filter_metric("failed", FILTER) == 1


def test_a_check_in_progress_holds_only_its_request(deploy, upstreams, via):
    app, check = upstreams("v1"), CheckService(upstreams)
    bed = deploy({"v1": app}, [example("external-check.yaml", url=check.url, timeout_ms=5000)])
    held: list = []
    client = threading.Thread(target=lambda: held.append(as_user(bed.port, via, "hold", "/held")))
    client.start()
    try:
        check.server.wait(lambda: any(r.header("x-user") == "hold" for r in check.server.requests),
                          what="the held check")
        assert as_user(bed.port, via, "allow", "/other").status == 200  # the proxy goes on meanwhile
        assert [r.path for r in app.requests] == ["/other"] and not held
    finally:
        check.released.set()
        client.join(DEFAULT_WAIT + 10)
    assert held[0].status == 200 and app.wait_requests(2)[1].path == "/held"
