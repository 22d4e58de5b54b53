"""The pure part of what is written back about custom resources: an Istio resource's status
while rejected and after, the Gateway API statuses, the Warning Event, and the token bucket that
rate-limits the writes. Each status is computed from the object's current one, and computing it
again for an unchanged outcome gives an equal status (nothing to write)."""

import asyncio

import pytest

from pymesh.api.errors import ConfigError
from pymesh.control.kube.status_writer import StatusWriter, TokenBucket
from pymesh.kube import config_status
from pymesh.routing.gateway_api import conditions as c

ERROR = ConfigError("VirtualService default/reviews", 0, "spec.http[0].route[0].destination.host",
                    "empty domain name is not allowed")
VS = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
      "metadata": {"name": "reviews", "namespace": "default", "uid": "u-1", "resourceVersion": "7", "generation": 3}}


def test_a_rejected_istio_resource_gets_istios_validation_message_and_a_condition():
    status = config_status.istio_status(VS, [ERROR], True, 1_700_000_000)
    assert status["validationMessages"] == [{"type": {"code": "IST0106", "name": "SchemaValidationError"},
                                             "level": "ERROR", "documentationUrl": config_status.SCHEMA_ERROR_DOCS}]
    (condition,) = status["conditions"]
    assert condition == {"type": "PassedAnalysis", "status": "False", "reason": "errorsFound",
                         "message": "spec.http[0].route[0].destination.host: empty domain name is not allowed "
                                    "(the last good version stays in force)",
                         "observedGeneration": "3", "lastTransitionTime": "2023-11-14T22:13:20Z"}
    # computed again later, for the same outcome: the same status (nothing to write)
    again = config_status.istio_status({**VS, "status": status}, [ERROR], True, 1_700_000_999)
    assert again == status


def test_a_fixed_istio_resource_loses_our_entries_and_keeps_the_others():
    others = {"conditions": [{"type": "Reconciled", "status": "True"}],
              "validationMessages": [{"type": {"code": "IST0101", "name": "ReferencedResourceNotFound"}, "level": "ERROR"}]}
    rejected = config_status.istio_status({**VS, "status": others}, [ERROR], False, 0)
    assert len(rejected["conditions"]) == 2 and len(rejected["validationMessages"]) == 2
    assert "nothing from it applies" in rejected["conditions"][1]["message"]
    fixed = config_status.istio_status({**VS, "status": rejected}, [], True, 0)
    assert fixed == {**others, "observedGeneration": "3"}
    assert config_status.istio_status(VS, [], True, 0) == {}  # never rejected: no status at all


ROUTE = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "bookinfo", "namespace": "default", "generation": 1},
         "spec": {"parentRefs": [{"name": "gw"}, {"name": "mesh-svc", "kind": "Service", "group": "", "port": 9080}]}}


def test_a_routes_parents_are_written_with_their_parent_refs_and_other_controllers_kept():
    other = {"parentRef": {"name": "other"}, "controllerName": "example.com/other", "conditions": []}
    computed = c.ObjectStatus("HTTPRoute", "default", "bookinfo", parents=(
        c.ParentStatus("Gateway default/gw", (c.ok(c.ACCEPTED, "Route was valid"),)),
        c.ParentStatus("Service default/mesh-svc:9080", (c.Condition(c.ACCEPTED, False, c.NO_MATCHING_PARENT, "nope"),)),
    ))
    status = config_status.gateway_api_status({**ROUTE, "status": {"parents": [other]}}, computed, 1_700_000_000)
    first, second, third = status["parents"]
    assert first == other
    assert second["parentRef"] == {"name": "gw"} and second["controllerName"] == "pymesh.dev/gateway-controller"
    assert second["conditions"] == [{"type": "Accepted", "status": "True", "reason": "Accepted",
                                     "message": "Route was valid", "observedGeneration": 1,
                                     "lastTransitionTime": "2023-11-14T22:13:20Z"}]
    assert third["parentRef"]["kind"] == "Service" and third["conditions"][0]["status"] == "False"
    assert config_status.gateway_api_status({**ROUTE, "status": status}, computed, 1_800_000_000) == status


def test_a_gateways_conditions_listeners_and_addresses():
    gateway = {"kind": "Gateway", "metadata": {"name": "gw", "namespace": "default", "generation": 2}}
    computed = c.ObjectStatus("Gateway", "default", "gw", conditions=(c.ok(c.ACCEPTED),),
                              listeners=(c.ListenerStatus("http", 1, ("HTTPRoute",), (c.ok(c.ACCEPTED),)),),
                              addresses=("10.0.0.1", "gw.example.com"))
    status = config_status.gateway_api_status(gateway, computed, 0)
    assert status["conditions"][0]["observedGeneration"] == 2
    assert status["listeners"][0]["attachedRoutes"] == 1
    assert status["addresses"] == [{"type": "IPAddress", "value": "10.0.0.1"},
                                   {"type": "Hostname", "value": "gw.example.com"}]


def test_the_warning_event_regarding_a_rejected_object():
    event = config_status.rejection_event(VS, [ERROR] * 40, True, 1_700_000_000.5, "pymesh-control-0")
    assert event["apiVersion"] == "events.k8s.io/v1" and event["type"] == "Warning"
    assert event["reason"] == "SchemaValidationError" and event["action"] == "Validate"
    assert event["regarding"] == {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                                  "name": "reviews", "namespace": "default", "uid": "u-1", "resourceVersion": "7"}
    assert event["metadata"]["namespace"] == "default" and event["metadata"]["name"].startswith("reviews.")
    assert event["eventTime"] == "2023-11-14T22:13:20.500000Z"
    assert event["note"].startswith("spec.http[0]") and len(event["note"].encode()) <= 1024


@pytest.mark.parametrize("takes, expected", [
    ([0.0, 0.0, 0.0], [0.0, 0.0, 0.5]),  # a burst of 2, then one every 0.5 s
    ([0.0, 0.0, 0.5], [0.0, 0.0, 0.0]),
    ([0.0, 0.0, 0.25], [0.0, 0.0, 0.25]),
])
def test_token_bucket(takes, expected):
    bucket = TokenBucket(rate=2.0, burst=2, now=0.0)
    assert [bucket.take(now) for now in takes] == pytest.approx(expected)


def test_the_writer_sends_the_latest_write_per_target_and_survives_a_failing_one():
    async def main():
        sent = []
        writer = StatusWriter(rate=1000.0, burst=10)

        def write(label, fail=False):
            async def go():
                if fail:
                    raise RuntimeError("409 Conflict")
                sent.append(label)
            return go

        writer.offer("vs/a", "status a", write("a1"))
        writer.offer("vs/b", "status b", write("b", fail=True))
        writer.offer("vs/a", "status a", write("a2"))  # replaces a1, not sent yet
        writer.offer("vs/c", "status c", write("c"))
        task = asyncio.create_task(writer.run())
        try:
            for _ in range(200):
                if writer.pending == 0 and len(sent) + writer.failed == 3:
                    break
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
        return sent, writer.failed

    sent, failed = asyncio.run(main())
    assert sent == ["a2", "c"] and failed == 1
