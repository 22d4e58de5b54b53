"""Which workload a pod belongs to (pymesh/kube/workloads.py's workload_name): the one rule the
injected proxy's PYMESH_WORKLOAD and discovery's WorkloadEntry share, Istio's
GetDeployMetaFromPod, table-driven, hostile shapes included."""

from __future__ import annotations

import pytest

from pymesh.kube.workloads import workload_name


def owned(kind: str, name: str, controller: object = True, **labels: object) -> dict:
    return {"metadata": {"name": "pod-x", "labels": labels,
                         "ownerReferences": [{"kind": kind, "name": name, "controller": controller}]}}


CASES = {
    "a Deployment's pod": (owned("ReplicaSet", "reviews-v1-5b9c7", **{"pod-template-hash": "5b9c7"}), "reviews-v1"),
    "a bare ReplicaSet's pod (no hash label)": (owned("ReplicaSet", "reviews-v1-5b9c7"), "reviews-v1-5b9c7"),
    "a hash that is not the name's suffix": (owned("ReplicaSet", "rs", **{"pod-template-hash": "abc"}), "rs"),
    "a Job's pod": (owned("Job", "pi"), "pi"),
    "a StatefulSet's pod": (owned("StatefulSet", "db"), "db"),
    "an owner that is not the controller": (owned("ReplicaSet", "rs", controller=False), "pod-x"),
    "no owner": ({"metadata": {"name": "web"}}, "web"),
    "only a generateName (a template)": ({"metadata": {"generateName": "web-"}}, "web"),
    "nothing": ({"metadata": {}}, ""),
    "not a pod": ("pod", ""),
    "metadata a list": ({"metadata": []}, ""),
    "ownerReferences a map": ({"metadata": {"name": "web", "ownerReferences": {"name": "x"}}}, "web"),
    "owner name a number": ({"metadata": {"name": "web", "ownerReferences": [{"name": 7, "controller": True}]}}, "web"),
    "labels a list, hash a number": ({"metadata": {"labels": ["a"], "ownerReferences": [
        {"kind": "ReplicaSet", "name": "rs-1", "controller": True}]}}, "rs-1"),
    "hash a number": (owned("ReplicaSet", "rs-1", **{"pod-template-hash": 1}), "rs-1"),
}


@pytest.mark.parametrize("pod,expected", CASES.values(), ids=CASES.keys())
def test_workload_name(pod, expected):
    assert workload_name(pod) == expected
