"""Which PythonFilter code a proxy takes from its control server.

Code shipped with the configuration (a control server run with --ship-filter-code) is run only by
a proxy run with --accept-filter-code: whoever can write configuration could otherwise run code in
every proxy it selects. A control server never names a file on the proxy: a pushed file module
comes with its text, or not at all (and then fails to load, rejecting the snapshot). Checked on
receipt (the NACK names the resource) and again on the snapshot persisted from before a restart.
"""

from __future__ import annotations

from pymesh.api import model


def refusal(config: model.MeshConfig, accept_code: bool) -> str | None:
    """Why this proxy refuses `config` from a control server, or None."""
    for f in config.python_filters:
        who = f"PythonFilter {f.metadata.namespace}/{f.metadata.name}"
        if f.module.resolved:
            return f"{who}: a control server may not name a file on this proxy ({f.module.resolved})"
        if f.module.source and not accept_code:
            return (f"{who}: the control server shipped the code of {f.module.file}; this proxy runs shipped "
                    "filter code only with --accept-filter-code")
    return None
