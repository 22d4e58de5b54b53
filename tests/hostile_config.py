"""Hostile configuration inputs the loader must refuse, shared by the api, proxy and control tests
(tests/hostile_config.py, importable from every test directory like waiting.py)."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

MIB = 1 << 20


def alias_bomb(levels: int = 9) -> str:
    """Billion laughs: each level is nine aliases of the one before (about 600 bytes, 9**9 nodes)."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def string_bomb(aliases: int = 2000, size: int = 1 << 20) -> str:
    """A VirtualService whose header values are one `size`-character annotation aliased `aliases`
    times: few nodes (the node limit lets it through) but 2 GB of header values once expanded."""
    keys = "".join(f"          x-h{i}: *s\n" for i in range(aliases))
    return (
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\n  namespace: default\n"
        f"  annotations:\n    pad: &s \"{'x' * size}\"\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n"
        "    - destination:\n        host: reviews\n    headers:\n      request:\n        set:\n" + keys
    )


def deep_nesting(depth: int = 1000) -> str:
    """A mapping nested `depth` levels deep, in block style (one key per line)."""
    return "".join("  " * i + "k:\n" for i in range(depth))


def padded(text: str, size: int) -> str:
    """`text` followed by comment lines up to `size` bytes: still valid, and just as meaningful."""
    line = "# " + "x" * 97 + "\n"
    return text + line * max(0, (size - len(text)) // len(line))


def many_services(count: int) -> str:
    """`count` valid ServiceEntries: a file that takes a while to load (about 1.5 s per MB)."""
    docs = [
        {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
         "metadata": {"name": f"svc-{i}", "namespace": "bulk"},
         "spec": {"hosts": [f"svc-{i}.bulk.svc.cluster.local"], "location": "MESH_INTERNAL",
                  "resolution": "STATIC", "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                  "endpoints": [{"address": f"10.{i // 250 % 250}.{i % 250}.{e + 1}", "labels": {"v": str(e)}}
                                for e in range(4)]}}
        for i in range(count)
    ]
    return "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in docs)


def write_sparse(path: Path, size: int) -> Path:
    """A file of `size` bytes that costs no disk: only its size is ever looked at."""
    with open(path, "wb") as out:
        out.truncate(size)
    os.utime(path)
    return path
