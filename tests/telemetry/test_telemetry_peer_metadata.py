import pytest

from pymesh.routing.snapshot import ProxyIdentity
from pymesh.telemetry.metrics import Peer
from pymesh.telemetry.peer_metadata import MAX_LENGTH, decode_peer, encode_peer


def test_round_trip_names_the_caller():
    identity = ProxyIdentity(workload="productpage-v1", namespace="shop", labels={"app": "productpage", "version": "v1"})
    peer = decode_peer(encode_peer(identity))
    assert (peer.workload, peer.namespace, peer.app, peer.version) == ("productpage-v1", "shop", "productpage", "v1")
    assert peer.canonical_service == "productpage"


def test_separator_in_a_value_cannot_shift_fields():
    identity = ProxyIdentity(workload="a;b", namespace="ns", labels={})
    assert decode_peer(encode_peer(identity)).workload == "ab"


@pytest.mark.parametrize("value", [None, b"", b"only;three;fields", b"a;b;c;d;e", b"x" * (MAX_LENGTH + 1)])
def test_absent_or_malformed_is_unknown(value):
    assert decode_peer(value) == Peer()
