"""How long a change takes to reach the mesh: from the first event of the burst that caused it to
the answer of the last proxy it affected (observed once per generation).

A proxy answers with its ACK of that version or a later one; a NACK or a disconnect also ends
its wait (it will not ACK that version, and the NACK is counted on its own).

`observe_proxy`, if given, also sees each proxy's own delay when it answers (istiod's
pilot_proxy_convergence_time is per proxy; a proxy that disconnects is not observed).
"""

from __future__ import annotations

import time
from typing import Callable, Hashable, Iterable


class Convergence:
    def __init__(self, observe: Callable[[float], None], clock: Callable[[], float] = time.monotonic,
                 observe_proxy: Callable[[float], None] | None = None):
        self._observe = observe
        self._observe_proxy = observe_proxy
        self._clock = clock
        self._pending: dict[int, tuple[float, set[Hashable]]] = {}

    def started(self, version: int, detected_at: float, affected: Iterable[Hashable]) -> None:
        self._pending[version] = (detected_at, set(affected))
        self._settle()

    def answered(self, who: Hashable, version: int) -> None:
        """`who` applied (or refused) `version`, and so every earlier one it was sent."""
        for v, (detected_at, waiting) in self._pending.items():
            if v <= version and who in waiting:
                waiting.discard(who)
                if self._observe_proxy is not None:
                    self._observe_proxy(max(0.0, self._clock() - detected_at))
        self._settle()

    def gone(self, who: Hashable) -> None:
        for _, waiting in self._pending.values():
            waiting.discard(who)
        self._settle()

    @property
    def pending(self) -> list[int]:
        return sorted(self._pending)

    def _settle(self) -> None:
        for version in [v for v, (_, waiting) in self._pending.items() if not waiting]:
            detected_at, _ = self._pending.pop(version)
            self._observe(max(0.0, self._clock() - detected_at))
