"""What became of configuration reloads: the last attempt for /config_dump, the counters for
/stats and Prometheus. A reload that is rejected or fails changes nothing but this record (and
the log), so this is where an operator sees that an edit did not apply and why."""

from __future__ import annotations

import time

from pymesh.telemetry.metrics import MetricsContext

SUCCESS, REJECTED, FAILURE = "success", "rejected", "failure"


class ReloadRecord:
    def __init__(self, metrics: MetricsContext, version_in_force: str) -> None:
        self.version_in_force = version_in_force
        self.last: dict | None = None
        self._stats = metrics.config_reload_stats()
        self._totals = metrics.config_reloads()

    def record(self, result: str, version: str, errors: list[str] = ()) -> None:
        """One attempt to move to `version`, and how it ended (SUCCESS, REJECTED or FAILURE)."""
        if result == SUCCESS:
            self.version_in_force = version
        self.last = {"time": time.time(), "version": version, "result": result, "errors": list(errors)}
        self._stats["update_attempt"] += 1
        self._stats[f"update_{result}"] += 1
        self._totals[result][0] += 1

    def dump(self) -> dict:
        """The /config_dump `config_status` section."""
        return {"version_in_force": self.version_in_force, "last_attempt": self.last}
