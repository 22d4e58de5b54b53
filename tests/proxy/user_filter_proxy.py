"""`pymesh` with Python filters given by the test (PYMESH_TEST_FILTERS, JSON), until the
PythonFilter resource compiles them into the snapshot: each installed snapshot gets these specs.

Run as `python tests/proxy/user_filter_proxy.py proxy ...` (the proxy harness's arguments)."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys

from pymesh.cli import main
from pymesh.filters import FilterMatch, FilterSpec
from pymesh.proxy import runtime


def specs_from(text: str) -> dict[str, tuple[FilterSpec, ...]]:
    out = {"inbound": [], "outbound": []}
    for item in json.loads(text):
        module, _, name = item["module"].partition(":")
        spec = FilterSpec(item["name"], item["module"], getattr(importlib.import_module(module), name),
                          item.get("config", {}), item.get("phase", "UNSPECIFIED_PHASE"), item.get("priority", 0),
                          item.get("fail_strategy", "FAIL_CLOSE"),
                          tuple(FilterMatch(m.get("mode", "UNDEFINED"), tuple(m.get("ports", ()))) for m in item.get("match", ())))
        for direction in out:
            out[direction].append(spec)
    return {d: tuple(s) for d, s in out.items()}


_SPECS = specs_from(os.environ["PYMESH_TEST_FILTERS"])
_install = runtime.Runtime.install


def _with_filters(self, snapshot):
    _install(self, dataclasses.replace(snapshot, python_filters=_SPECS))


runtime.Runtime.install = _with_filters

if __name__ == "__main__":
    sys.exit(main())
