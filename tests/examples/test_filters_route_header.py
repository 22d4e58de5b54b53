"""examples/filters/route_header.py through a real proxy: each response names the route and the
cluster that answered it."""

from filter_bed import deploy, example  # noqa: F401  (deploy: the fixture)
from proxy_harness import HOST, curl, to_subset

ROUTES = [
    {"name": "to-v2", "match": [{"uri": {"prefix": "/v2"}}], "route": [to_subset("v2")]},
    {"name": "to-v1", "route": [to_subset("v1")]},
]


def test_the_response_names_its_route_and_cluster(deploy, upstreams, via):
    apps = {"v1": upstreams("v1"), "v2": upstreams("v2")}
    bed = deploy(apps, [example("route-header.yaml")], http=ROUTES)
    for path, route, subset in (("/v2/item", "to-v2", "v2"), ("/other", "to-v1", "v1")):
        answer = curl(bed.port, path, *via)
        assert answer.status == 200 and answer.header("x-upstream") == subset, answer
        assert answer.header("x-route") == route
        assert answer.header("x-cluster") == f"outbound|{bed.port}|{subset}|{HOST}"
