"""PythonFilters as the control server sends them. An importable module (package.module:Class)
is sent as its name: the proxy imports its own installed copy, the default. A file module's text
is sent only when the operator runs the server with --ship-filter-code, which means that anyone
who can write configuration runs code in every proxy the filter selects (that accepts it:
`pymesh proxy --accept-filter-code`); otherwise it is sent without code and such proxies reject
the snapshot naming the resource. The server's own path of the file is never sent."""

from __future__ import annotations

import logging
from dataclasses import replace

from pymesh.api import model
from pymesh.routing.filter_loading import MAX_SOURCE

log = logging.getLogger("pymesh.control")


def outgoing(config: model.MeshConfig, ship_code: bool) -> model.MeshConfig:
    """`config` with each file module's path replaced by its text (ship_code) or dropped."""
    if not any(f.module.resolved for f in config.python_filters):
        return config
    return replace(config, python_filters=tuple(_outgoing(f, ship_code) for f in config.python_filters))


def _outgoing(f: model.PythonFilter, ship_code: bool) -> model.PythonFilter:
    module = f.module
    if not module.resolved:
        return f
    source = _read(f) if ship_code else ""
    return replace(f, module=replace(module, resolved="", source=source))


def _read(f: model.PythonFilter) -> str:
    """The file's text ("" if it cannot be read now: the proxies reject the filter, and this logs why)."""
    try:
        with open(f.module.resolved, "rb") as stream:
            data = stream.read(MAX_SOURCE + 1)
        if len(data) > MAX_SOURCE:
            raise ValueError(f"over the {MAX_SOURCE // 1024} KiB limit")
        return data.decode("utf-8")
    except (OSError, ValueError) as error:
        log.error("PythonFilter %s/%s: cannot ship %s: %s", f.metadata.namespace, f.metadata.name, f.module.file, error)
        return ""
