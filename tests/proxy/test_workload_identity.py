"""The proxy's certificate timing without a network: when it renews (from arrival, the CA
backdates notBefore), when it stops being ready, how it retries, and which pushed bundles it
installs. The clock is injected."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from pymesh.proxy.certs import CertificateStore
from pymesh.proxy.workload_identity import WorkloadIdentity
from pymesh.security.ca import CertificateAuthority, utc_now
from pymesh.security.identity import SpiffeId
from pymesh.security.jointoken import JoinToken

NOW = utc_now().replace(microsecond=0)  # X.509 times are whole seconds
REVIEWS = SpiffeId("cluster.local", "demo", "reviews")
TOKEN = JoinToken("id", "demo", "reviews", "cluster.local", "sha256:" + "0" * 64, "secret")


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


@pytest.fixture
def world():
    clock = Clock()
    ca = CertificateAuthority.create_root("cluster.local", NOW)
    store = CertificateStore(clock=clock)
    identity = WorkloadIdentity("127.0.0.1", 1, TOKEN, store, rng=random.Random(7), clock=clock)
    identity.install(ca.issue(REVIEWS, timedelta(seconds=4), NOW))  # notBefore is NOW - 1 min
    return clock, ca, store, identity


def test_renewal_is_about_halfway_from_arrival_not_from_the_backdated_not_before(world) -> None:
    clock, ca, store, identity = world
    life = (store.current.not_after - NOW).total_seconds()  # about 4 s (X.509 times are whole seconds)
    assert 3 <= life <= 4
    delays = [(identity._renew_time(store.current) - NOW).total_seconds() for _ in range(50)]
    assert all(0.45 * life - 0.001 <= d <= 0.55 * life + 0.001 for d in delays), delays  # 0.5 +- 0.05 of it
    assert len(set(delays)) > 1  # jittered


@pytest.mark.parametrize("after, ready, says", [
    (0.0, True, None), (3.5, True, None), (3.7, False, "was not renewed"), (4.1, False, "no valid workload certificate"),
])
def test_readiness_through_the_lifetime(world, after, ready, says) -> None:
    clock, ca, store, identity = world
    identity.error = "control server unreachable"
    clock.now = NOW + timedelta(seconds=after)
    problem = identity.problem()
    assert (problem is None) == ready and (says is None or says in problem), problem
    if after > 4:
        assert store.client_context() is None  # an expired certificate is never presented


def test_retries_come_before_the_certificate_runs_out(world) -> None:
    clock, ca, store, identity = world
    clock.now = NOW + timedelta(seconds=3)
    for failures in range(1, 12):
        assert identity._retry_delay(failures) <= 0.25  # a quarter of the second left
    store.current = None  # no certificate: plain backoff, capped
    assert max(identity._retry_delay(n) for n in range(1, 20)) <= 30.0


def test_a_pushed_bundle_is_installed_only_if_the_certificate_verifies_by_it(world) -> None:
    clock, ca, store, identity = world
    other = CertificateAuthority.create_root("cluster.local", NOW)
    before = store.current
    identity.trust_bundle(other.trust_bundle_pem.decode())  # would strand the current certificate
    assert store.current is before
    both = ca.trust_bundle_pem + other.trust_bundle_pem
    identity.trust_bundle(both.decode())
    assert store.current.roots_pem == both and store.current.serial == before.serial


def test_the_kept_certificate_is_used_again_only_if_valid_and_this_tokens(world, tmp_path) -> None:
    clock, ca, store, identity = world
    directory = str(tmp_path / "identity")
    identity.directory = directory
    identity.install(store.current)  # written there
    again = WorkloadIdentity("127.0.0.1", 1, TOKEN, CertificateStore(clock=clock), clock=clock, directory=directory)
    assert again.restore() and again.store.current.serial == store.current.serial
    other = JoinToken("id", "demo", "ratings", "cluster.local", TOKEN.ca_pin, "s")
    assert not WorkloadIdentity("127.0.0.1", 1, other, CertificateStore(clock=clock), clock=clock,
                                directory=directory).restore()
    clock.now = NOW + timedelta(seconds=5)
    assert not WorkloadIdentity("127.0.0.1", 1, TOKEN, CertificateStore(clock=clock), clock=clock,
                                directory=directory).restore()
    assert not WorkloadIdentity("127.0.0.1", 1, TOKEN, CertificateStore(clock=clock), clock=clock,
                                directory=str(tmp_path / "none")).restore()


def test_a_pushed_bundle_is_kept_with_the_certificate(world, tmp_path) -> None:
    clock, ca, store, identity = world
    identity.directory = str(tmp_path / "identity")
    identity.install(store.current)
    both = ca.trust_bundle_pem + CertificateAuthority.create_root("cluster.local", NOW).trust_bundle_pem
    identity.trust_bundle(both.decode())
    assert (tmp_path / "identity" / "root-cert.pem").read_bytes() == both
