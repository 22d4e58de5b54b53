"""The injector's settings file (`--injection-settings`: the pymesh-injection-settings ConfigMap
mounted as a volume), reloaded when it changes, as istiod's injector follows its ConfigMap: the
kubelet swaps a ConfigMap volume's files atomically, so a changed file is read whole. A version
that does not load is logged with its reason and the last good one stays; at start, a bad file
is refused (ValueError naming the flag)."""

from __future__ import annotations

import asyncio
import hashlib
import logging

from pymesh.kube.inject_settings import MAX_SETTINGS_BYTES, InjectSettings, load_settings

log = logging.getLogger("pymesh.control.webhook")

CHECK_INTERVAL = 10.0  # seconds between looks (the kubelet syncs ConfigMap volumes every ~60s)


class SettingsFile:
    def __init__(self, path: str):
        self.path = path
        self._seen = b""
        try:
            self.settings = self._load()
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # InjectError is a ValueError
            raise ValueError(f"--injection-settings {path}: {getattr(exc, 'strerror', None) or exc}") from None

    def _load(self) -> InjectSettings:
        with open(self.path, "rb") as stream:
            data = stream.read(MAX_SETTINGS_BYTES + 1)
        digest = hashlib.sha256(data).digest()
        settings = self.settings if digest == self._seen else load_settings(data.decode("utf-8"))
        self._seen = digest
        return settings

    def reload(self) -> None:
        try:
            settings = self._load()
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.error("injection settings: %s does not load (%s); the last good settings stay in force",
                      self.path, getattr(exc, "strerror", None) or exc)
            return
        if settings is not self.settings:
            self.settings = settings
            log.info("injection settings: reloaded from %s", self.path)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            self.reload()
