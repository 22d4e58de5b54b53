"""Where result files go and how they are named: <UTC timestamp>[-suffix].json under results/."""

from __future__ import annotations

import json
from pathlib import Path


def write(result: dict, out_dir: Path, prefix: str = "", suffix: str = "") -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["date"].replace(":", "").replace("-", "").replace("+0000", "Z")
    path = out_dir / f"{prefix}{stamp}{suffix}.json"
    path.write_text(json.dumps(result, indent=1))
    return path
