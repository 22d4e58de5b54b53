"""TLS plumbing shared by the proxy and the control server (both present certificates held
in memory)."""

from __future__ import annotations

import os
import ssl
import tempfile


def load_key_pair(context: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    """`load_cert_chain` from memory: `ssl` reads only files, so the pair goes through a
    private temporary directory (0700, file 0600) that is removed at once."""
    with tempfile.TemporaryDirectory(prefix="pymesh-tls-") as directory:
        path = os.path.join(directory, "pair.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as stream:
            stream.write(chain_pem + b"\n" + key_pem)
        context.load_cert_chain(path)
