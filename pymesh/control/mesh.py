"""The mesh as the server pushes it: the store's configuration plus the registered proxies, and
the version counter that names each generation of it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from pymesh.api import model
from pymesh.control import membership


log = logging.getLogger("pymesh.control")


@dataclass(frozen=True)
class Generation:
    version: int
    config: model.MeshConfig
    detected_at: float  # monotonic time of the first change that led to it (for convergence)


class Mesh:
    def __init__(self, last_version: int = 0, trust_domain: str | None = None):
        self.current = Generation(last_version, model.MeshConfig(), 0.0)
        self._published = False  # the first update always starts a generation, even an empty one
        self.trust_domain = trust_domain  # with mTLS: registrations are admitted by identity
        self.refused: dict[str, str] = {}  # registered node id -> why it is not an endpoint

    def update(self, config: model.MeshConfig, registered: tuple[model.WorkloadEntry, ...],
               detected_at: float) -> Generation | None:
        """A new generation when the combined configuration differs from the current one."""
        if self.trust_domain is not None:
            registered, refused = membership.admitted(registered, config.service_entries, self.trust_domain)
            for name in refused.keys() - self.refused.keys():
                log.warning("registered proxy %s is not an endpoint: %s", name, refused[name])
            self.refused = refused
        combined = replace(config, workload_entries=config.workload_entries + registered)
        if combined == self.current.config and self._published:
            return None
        self._published = True
        self.current = Generation(self.current.version + 1, combined, detected_at)
        return self.current
