"""The downward API's labels file (a volume item with fieldRef metadata.labels): one `key="value"`
line per label, the value quoted as Go's %q. The injected proxy reads its pod's labels there (an
env var cannot hold a map), so they select Sidecars and sourceLabels as the pod's own."""

from __future__ import annotations

import json

MAX_BYTES = 256 * 1024  # the API server caps all labels and annotations together at 256 KiB


def parse_labels_file(text: str) -> dict[str, str]:
    """Labels by key; ValueError naming the line when one is not key="value"."""
    if len(text) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    labels = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, quoted = line.partition("=")
        try:
            value = json.loads(quoted) if sep and quoted.startswith('"') else None
        except ValueError:
            value = None
        if not key or not isinstance(value, str):
            raise ValueError(f"line {number}: expected key=\"value\", got {line[:80]!r}")
        labels[key] = value
    return labels
