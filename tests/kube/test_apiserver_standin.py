"""The STAND-IN API server (tests/kube/apiserver.py) against the recorded real responses of
tests/kube/recorded/ (SOURCES.md there): the same shapes for lists, pages, watch events, 410s and
Status errors, so what passes against the stand-in reads a real server's answers."""

import http.client
import json
import re
import ssl
from pathlib import Path

import pytest

from pymesh.kube.resources import SERVICES

RECORDED = Path(__file__).parent / "recorded"


def recorded(name: str):
    text = (RECORDED / name).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()] if name.endswith(".jsonl") else json.loads(text)


class Raw:
    """Plain HTTP requests to the stand-in (http.client, not the production client): the bytes
    the server sends, as a test of the server itself."""

    def __init__(self, apiserver) -> None:
        context = ssl.create_default_context(cafile=str(apiserver.ca_path))
        self.connection = http.client.HTTPSConnection("localhost", apiserver.port, context=context, timeout=10)
        self.headers = {"Authorization": f"Bearer {apiserver.token}", "Accept": "application/json"}

    def request(self, method: str, path: str, body=None, content_type="application/json"):
        data = json.dumps(body).encode() if body is not None else None
        self.connection.request(method, path, body=data, headers={**self.headers, "Content-Type": content_type})
        response = self.connection.getresponse()
        return response, response.read()

    def close(self) -> None:
        self.connection.close()


@pytest.fixture
def raw(apiserver):
    client = Raw(apiserver)
    yield client
    client.close()


def shape(value):
    """The keys (in order) of every object, recursively, without the values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def kubernetes_service(apiserver) -> None:
    apiserver.apply({"apiVersion": "v1", "kind": "Service",
                     "metadata": {"name": "kubernetes", "namespace": "default",
                                  "labels": {"component": "apiserver", "provider": "kubernetes"}},
                     "spec": recorded("list-services.json")["items"][0]["spec"], "status": {"loadBalancer": {}}})


def test_list_has_the_recorded_shape(apiserver, raw):
    """Stand-in API server: a ServiceList as the real one (no kind/apiVersion on the items)."""
    kubernetes_service(apiserver)
    response, body = raw.request("GET", "/api/v1/namespaces/default/services")
    assert response.status == 200 and response.getheader("Content-Type") == "application/json"
    mine, real = json.loads(body), recorded("list-services.json")
    item, real_item = mine["items"][0], real["items"][0]
    assert list(mine) == list(real) and "kind" not in item and "apiVersion" not in item
    assert set(shape(real_item["metadata"])) <= set(shape(item["metadata"]))
    assert shape(item["spec"]) == shape(real_item["spec"])


def test_a_page_has_the_recorded_shape(apiserver, raw):
    """Stand-in API server: a first page with continue and remainingItemCount."""
    for name in ("a", "b", "c"):
        apiserver.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "test"},
                         "spec": {}, "status": {}})
    _, body = raw.request("GET", "/api/v1/pods?limit=1")
    page, real = json.loads(body), recorded("list-page.json")
    assert shape(page["metadata"]) == shape(real["metadata"]) and page["metadata"]["remainingItemCount"] == 2


def watch_lines(raw, path: str) -> tuple[http.client.HTTPResponse, list[dict]]:
    raw.connection.request("GET", path, headers=raw.headers)
    response = raw.connection.getresponse()
    return response, [json.loads(line) for line in response.read().splitlines() if line.strip()]


def test_watch_events_have_the_recorded_shape(apiserver, raw):
    """Stand-in API server: a chunked watch, one JSON event per line; ADDED, MODIFIED and
    BOOKMARK (only resourceVersion in its metadata) as recorded."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "test"}, "spec": {}, "status": {}}
    first = apiserver.apply(pod)
    apiserver.apply({**pod, "spec": {"nodeName": "n1"}})
    apiserver.bookmark_interval = 0.1
    since = int(first["metadata"]["resourceVersion"]) - 1
    response, events = watch_lines(raw, f"/api/v1/namespaces/test/pods?watch=1&resourceVersion={since}"
                                        "&allowWatchBookmarks=true&timeoutSeconds=1")
    assert response.getheader("Transfer-Encoding") == "chunked"
    real = recorded("watch-events.jsonl")
    assert [e["type"] for e in events[:3]] == ["ADDED", "MODIFIED", "BOOKMARK"]
    for mine, theirs in zip(events[:3], real):
        assert list(mine) == list(theirs) and list(mine["object"])[:3] == list(theirs["object"])[:3]
    assert events[2]["object"] == {"kind": "Pod", "apiVersion": "v1",
                                   "metadata": {"resourceVersion": str(apiserver.revision)}}


def test_compacted_watch_is_the_recorded_error_event(apiserver, raw):
    """Stand-in API server: watching from before the compacted history gives HTTP 200 and one
    ERROR event with the recorded 410 Expired Status, then the stream ends."""
    apiserver.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    apiserver.compact()
    response, events = watch_lines(raw, "/api/v1/pods?watch=true&resourceVersion=1")
    real = recorded("watch-expired-event.json")
    assert response.status == 200 and len(events) == 1
    assert shape(events[0]) == shape(real)
    pattern = re.sub(r"\d+", r"\\d+", re.escape(real["object"]["message"]))
    assert re.fullmatch(pattern, events[0]["object"]["message"])
    assert events[0]["object"]["message"] == f"too old resource version: 1 ({apiserver.revision})"


def test_expired_continue_is_the_recorded_410(apiserver, raw):
    for name in ("a", "b"):
        apiserver.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    _, body = raw.request("GET", "/api/v1/namespaces?limit=1")
    token = json.loads(body)["metadata"]["continue"]
    apiserver.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "c"}})
    apiserver.compact()  # the token's revision is now before the compacted history
    response, body = raw.request("GET", f"/api/v1/namespaces?limit=1&continue={token}")
    assert response.status == 410 and json.loads(body) == recorded("status-continue-expired.json")


@pytest.mark.parametrize("case", ["not-found", "already-exists", "conflict"])
def test_errors_are_the_recorded_status(apiserver, raw, case):
    """Stand-in API server: 404 and 409 Status bodies byte for byte as recorded (same names)."""
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reviews", "namespace": "default"},
               "spec": {"ports": [{"port": 9080}]}}
    if case == "not-found":
        response, body = raw.request("GET", "/api/v1/namespaces/default/services/nope")
    elif case == "already-exists":
        apiserver.apply(service)
        response, body = raw.request("POST", "/api/v1/namespaces/default/services", service)
    else:
        apiserver.apply(service)
        stale = {**service, "metadata": {**service["metadata"], "resourceVersion": "1"}}
        response, body = raw.request("PUT", "/api/v1/namespaces/default/services/reviews", stale)
    real = recorded(f"status-{case}.json")
    assert response.status == real["code"] and json.loads(body) == real


def test_token_review_answer_has_the_recorded_shape(apiserver, raw):
    real = recorded("tokenreview-response.json")
    apiserver.token_review = lambda spec: real["status"]
    response, body = raw.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                                 {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                  "spec": {"token": "t", "audiences": ["pymesh-ca"]}})
    answer = json.loads(body)
    assert response.status == 201 and answer["status"] == real["status"] and answer["kind"] == "TokenReview"


def test_an_unserved_group_is_plain_404_and_no_token_is_401(apiserver, raw):
    """Stand-in API server: a CRD's group that is not installed is the mux's plain-text 404; a
    request without the bearer token is 401."""
    response, body = raw.request("GET", "/apis/networking.istio.io/v1/virtualservices")
    assert response.status == 404 and body == b"404 page not found\n"
    raw.headers.pop("Authorization")
    response, body = raw.request("GET", "/api/v1/services")
    assert response.status == 401 and json.loads(body)["reason"] == "Unauthorized"


def test_apply_keeps_the_status_as_kubectl_apply(apiserver):
    """Stand-in API server: re-applying an object without status (a spec edit) keeps the status a
    controller wrote, as the status subresource does on a real server; one given with status sets it."""
    route = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "r", "namespace": "default"},
             "spec": {"ports": [{"port": 80}]}}
    apiserver.apply({**route, "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})
    apiserver.apply({**route, "spec": {"ports": [{"port": 81}]}})
    held = apiserver.get(SERVICES, "r", "default")
    assert held["spec"]["ports"] == [{"port": 81}] and held["status"]["loadBalancer"]["ingress"][0]["ip"] == "1.2.3.4"
    apiserver.apply({**route, "status": {}})
    assert apiserver.get(SERVICES, "r", "default")["status"] == {}
