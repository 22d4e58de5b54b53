"""Which registered proxies are endpoints (with mTLS; pymesh/control/membership.py), table-driven: the namespace is the
boundary, and a ServiceEntry with subjectAltNames admits only the identities it names."""

from __future__ import annotations

import pytest

from pymesh.api import model
from pymesh.control.membership import admitted, refusal
from pymesh.control.registry import TLS_MODE_LABEL, workload_entry
from pymesh.api.wire import Node

REVIEWS_SA = "spiffe://cluster.local/ns/demo/sa/reviews"


def se(name: str, ns: str = "demo", selector: dict | None = None, sans: tuple[str, ...] = ()) -> model.ServiceEntry:
    return model.ServiceEntry(metadata=model.Metadata(name=name, namespace=ns), hosts=(f"{name}.{ns}",),
                              workload_selector=selector, subject_alt_names=sans)


def entry(account: str, ns: str = "demo", **labels: str) -> model.WorkloadEntry:
    return workload_entry(Node(f"{account}-1.{ns}", namespace=ns, service_account=account, labels=labels,
                               addresses=("10.0.0.1",)), mtls=True)


@pytest.mark.parametrize("what, services, registered, refused", [
    ("no subjectAltNames: the namespace is the boundary", (se("reviews", selector={"app": "reviews"}),),
     entry("attacker", app="reviews"), None),
    ("named identity", (se("reviews", selector={"app": "reviews"}, sans=(REVIEWS_SA,)),),
     entry("reviews", app="reviews"), None),
    ("another identity claiming the labels", (se("reviews", selector={"app": "reviews"}, sans=(REVIEWS_SA,)),),
     entry("attacker", app="reviews"), "admits only " + REVIEWS_SA),
    ("labels that do not select it", (se("reviews", selector={"app": "reviews"}, sans=(REVIEWS_SA,)),),
     entry("attacker", app="ratings"), None),
    ("a ServiceEntry in another namespace never selects it",
     (se("reviews", ns="prod", selector={"app": "reviews"}, sans=("spiffe://cluster.local/ns/prod/sa/reviews",)),),
     entry("attacker", app="reviews"), None),
    ("the same account name in another namespace is another identity",
     (se("reviews", ns="prod", selector={"app": "reviews"}, sans=(REVIEWS_SA,)),),
     entry("reviews", ns="prod", app="reviews"), "admits only " + REVIEWS_SA),
    ("one refusing ServiceEntry is enough", (se("a", selector={"app": "r"}), se("b", selector={"app": "r"}, sans=(REVIEWS_SA,))),
     entry("attacker", app="r"), "ServiceEntry demo/b"),
])
def test_membership(what, services, registered, refused) -> None:
    why = refusal(registered, services, "cluster.local")
    assert (why is None) == (refused is None) and (refused is None or refused in why), (what, why)
    kept, reasons = admitted((registered,), services, "cluster.local")
    assert (kept == ()) == (refused is not None) and set(reasons) == ({registered.metadata.name} if refused else set())


def test_registered_entries_carry_istios_tls_mode_label_with_mtls_only() -> None:
    node = Node("r-1.demo", namespace="demo", labels={"app": "r"}, addresses=("10.0.0.1",))
    assert workload_entry(node, mtls=True).spec.labels == {"app": "r", TLS_MODE_LABEL: "istio"}
    assert workload_entry(node).spec.labels == {"app": "r"}
