"""Writing key material (the CA's, a workload's): shared by `pymesh ca`, the control server and
the proxy, which keeps its certificate in its data directory."""

from __future__ import annotations

import os
import tempfile


def write_private(path: str, data: bytes) -> None:
    """Write a secret: 0600, in a directory made 0700 if new, replaced atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")  # mkstemp: 0600
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_public(path: str, data: bytes) -> None:
    write_private(path, data)
    os.chmod(path, 0o644)
