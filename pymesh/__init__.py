"""pymesh: a service mesh in Python."""

__version__ = "0.1.0"
