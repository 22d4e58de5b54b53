"""Fixtures of the control server tests: servers that are always stopped, a config directory."""

from __future__ import annotations

import pytest

from control_harness import ControlServer


@pytest.fixture
def config_dir(tmp_path):
    path = tmp_path / "config"
    path.mkdir()
    return path


@pytest.fixture
def control(tmp_path, config_dir):
    """control(grace=..., data_dir=...) -> a started ControlServer on config_dir; killed at
    teardown, its log printed there (so a failing test shows it)."""
    started: list[ControlServer] = []

    def start(grace: float = 5.0, data_dir=None, *extra: str, secure: bool = False) -> ControlServer:
        server = ControlServer(config_dir, tmp_path / f"control{len(started)}.log", grace, data_dir, *extra,
                               secure=secure)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()
        print(f"--- control server log ({server.log_path.name}) ---\n{server.log()[-6000:]}")
