import pytest

from pymesh.api import model
from pymesh.routing.snapshot import Cluster, Endpoint, ProxyIdentity, ServiceLabels


@pytest.fixture
def identity():
    return ProxyIdentity(workload="productpage-v1", namespace="default",
                         labels={"app": "productpage", "version": "v1"})


@pytest.fixture
def endpoint():
    return Endpoint("10.0.0.5", 9080, {"app": "reviews", "version": "v2"},
                    workload="reviews-v2", namespace="default")


@pytest.fixture
def cluster(endpoint):
    return Cluster("outbound|9080||reviews.default.svc.cluster.local",
                   "reviews.default.svc.cluster.local", 9080, "", "HTTP", (endpoint,),
                   model.LoadBalancerSettings(), model.ConnectionPoolSettings(),
                   service_labels=ServiceLabels("reviews.default.svc.cluster.local", "reviews", "default"))
