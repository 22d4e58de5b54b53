"""The differential suite's plumbing: tests/proxy on the path (for proxy_harness), and the
session summary (corpus size, per-category table) printed at the end of every run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_PROXY_TESTS = str(Path(__file__).resolve().parent.parent / "proxy")
if _PROXY_TESTS not in sys.path:  # run on its own, pytest puts only tests/differential on the path
    sys.path.insert(0, _PROXY_TESTS)

SUMMARY = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def summary_lines(pytestconfig) -> list[str]:
    """Lines for the terminal summary; the session fixture that runs the corpus fills them."""
    return pytestconfig.stash.setdefault(SUMMARY, [])


def pytest_terminal_summary(terminalreporter, config) -> None:
    lines = config.stash.get(SUMMARY, [])
    if lines:
        terminalreporter.section("differential: pymesh vs Envoy")
        for line in lines:
            terminalreporter.write_line(line)
