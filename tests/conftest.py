"""Fixtures shared by every test directory."""

from netns import testbed  # noqa: F401  (tests/netns.py: pods as network namespaces)


import pytest  # noqa: E402

# Tests that share something machine-wide run one after another in one process (pytest-xdist's
# loadgroup): the network-namespace test bed (fixed 198.18.0.0/24 addresses, and it removes
# namespaces a killed run left), the benchmarks (CPU pinning, fixed port bases), the examples
# with fixed ports, and the real Chromium and Prometheus.
SERIAL = ("tests/sidecar/", "tests/capture/", "tests/kube/test_inject_netns.py", "tests/benchmarks/",
          "tests/examples/test_examples.py", "tests/mesh/test_mesh_page.py", "tests/mesh/test_mesh_prometheus.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.nodeid.startswith(SERIAL) or "testbed" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("machine-wide"))
