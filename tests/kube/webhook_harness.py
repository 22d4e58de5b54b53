"""The webhooks' test kit: a real `pymesh control serve --webhook-listen` (the `control`
fixture, stopped at teardown with its log printed) and curl as the API server's stand-in client,
verifying the webhook's certificate for the Service's DNS name against the mesh root, as the API
server does with the configuration's caBundle. The recorded AdmissionReview is a real one (see
admission/README.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "control"))
from control_harness import ControlServer  # noqa: E402

HERE = Path(__file__).parent
RECORDED = (HERE / "admission" / "deployment-pod-create.json").read_bytes()
SERVICE = "pymesh-control.pymesh-system.svc"
TIMEOUT = 10


@pytest.fixture
def control(tmp_path):
    """A secure control server with the webhooks on a free port (`control.webhook_port`)."""
    (tmp_path / "config").mkdir()
    server = ControlServer(tmp_path / "config", tmp_path / "control.log", 5.0, tmp_path / "data",
                           "--webhook-listen", "127.0.0.1:0", secure=True)
    try:
        yield server.start()
    finally:
        server.stop()
        print(server.log())


def curl(control, path: str, data: bytes | None = None, *args: str) -> tuple[int, str]:
    """(HTTP status, body) of curl against the webhook port, verifying it is SERVICE."""
    ca = control.args[control.args.index("--data-dir") + 1] + "/ca/root-cert.pem"
    command = ["curl", "-sS", "--max-time", str(TIMEOUT), "--cacert", ca,
               "--resolve", f"{SERVICE}:{control.webhook_port}:127.0.0.1", "-w", "\n%{http_code}"]
    if data is not None:
        command += ["-H", "Content-Type: application/json", "--data-binary", "@-"]
    command += args  # after: a header given here replaces the one above
    done = subprocess.run([*command, f"https://{SERVICE}:{control.webhook_port}{path}"], input=data,
                          capture_output=True, timeout=TIMEOUT + 5, check=True)
    text, _, status = done.stdout.decode().rpartition("\n")
    return int(status), text


