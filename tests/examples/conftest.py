"""The example filters' tests run through the data-plane harness (tests/proxy) and the mesh
harness (tests/mesh): their fixtures, taken from there rather than copied."""

import importlib.util
import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _directory in ("proxy", "mesh"):
    if str(_TESTS / _directory) not in sys.path:
        sys.path.insert(0, str(_TESTS / _directory))

_spec = importlib.util.spec_from_file_location("proxy_fixtures", _TESTS / "proxy" / "conftest.py")
_proxy_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_proxy_fixtures)

from mesh_harness import mesh  # noqa: E402,F401

via, proxies, upstreams = _proxy_fixtures.via, _proxy_fixtures.proxies, _proxy_fixtures.upstreams
