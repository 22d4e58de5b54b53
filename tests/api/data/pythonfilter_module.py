"""A filter module read from a file beside its YAML (tests/api/data/pythonfilter.yaml)."""

from pymesh.filters import HttpFilter


class Noop(HttpFilter):
    """Does nothing: the chain goes on."""
