"""Config templates for every peer, kept as files in configs/ with {{name}} placeholders.

{{...}} rather than $name or {name}: nginx and HAProxy configs use $ and YAML uses braces, and a
placeholder left unfilled is an error instead of a silent default.
"""

from __future__ import annotations

import re
from pathlib import Path

from benchmarks import CONFIG_DIR

PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def placeholders(template: str) -> set[str]:
    return set(PLACEHOLDER.findall((CONFIG_DIR / template).read_text()))


def render(template: str, params: dict[str, object]) -> str:
    text = (CONFIG_DIR / template).read_text()
    missing = placeholders(template) - params.keys()
    if missing:
        raise KeyError(f"{template}: no value for {', '.join(sorted(missing))}")
    return PLACEHOLDER.sub(lambda m: str(params[m.group(1)]), text)


def write(template: str, params: dict[str, object], directory: Path, name: str | None = None) -> Path:
    path = directory / (name or template)
    path.write_text(render(template, params))
    return path
