"""Fixtures of the Kubernetes tests: the stand-in API server (tests/kube/apiserver.py), never a
real one (none can run here)."""

import pytest

from apiserver import StandInAPIServer


@pytest.fixture
def apiserver(tmp_path):
    """A stand-in API server over HTTPS with a throwaway CA and a bearer token; its kubeconfig at
    `apiserver.kubeconfig`."""
    with StandInAPIServer(tmp_path) as server:
        yield server
