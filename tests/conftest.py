"""Fixtures shared by every test directory."""

from netns import testbed  # noqa: F401  (tests/netns.py: pods as network namespaces)
