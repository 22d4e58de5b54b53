"""The fuzz targets by name: each builds the function that checks one input (raising
InvariantBroken), importing pymesh only when called, so that `python -m tests.fuzz` can
instrument it for coverage first."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

CORPUS = Path(__file__).resolve().parent / "corpus"
MAX_LEN = {"codec": 4096, "proxy": 2048, "tls_hello": 17000}  # bytes; bytewise delivery makes long inputs slow


def codec() -> Callable[[bytes], None]:
    from .codec_target import check

    return check


def proxy() -> Callable[[bytes], None]:
    from .proxy_target import Harness

    return Harness().check


def tls_hello() -> Callable[[bytes], None]:
    from .tls_hello_target import check

    return check


TARGETS: dict[str, Callable[[], Callable[[bytes], None]]] = {"codec": codec, "proxy": proxy, "tls_hello": tls_hello}


def seeds() -> list[Path]:
    """Every seed of every target (both oracles replay all of them)."""
    return sorted(path for path in CORPUS.glob("*/*") if path.is_file())
