"""tests/proxy on the path (for proxy_harness), as tests/mesh does."""

import sys
from pathlib import Path

_PROXY_TESTS = str(Path(__file__).resolve().parent.parent / "proxy")
if _PROXY_TESTS not in sys.path:
    sys.path.insert(0, _PROXY_TESTS)
