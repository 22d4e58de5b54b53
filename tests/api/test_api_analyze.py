"""`pymesh analyze`: every error on its own line, a summary, exit 1 on errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pymesh.cli import main

PYMESH = Path(sys.executable).with_name("pymesh")  # the console script of this environment


def test_three_mistakes_via_the_installed_command(data: Path) -> None:
    path = data / "three-mistakes.yaml"
    done = subprocess.run([str(PYMESH), "analyze", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [
        f"{path}:13 spec.http[0].retries.attempts: must be >= 0, got -2",
        f"{path}:16 spec.http[0].fault.abort.httpStatus: must be between 200 and 599, got 700",
        f"{path}:26 spec.trafficPolicy.loadBalancer.simple: load balancer 'FASTEST' is not valid "
        "(expected ROUND_ROBIN, LEAST_REQUEST, RANDOM or PASSTHROUGH)",
        "3 errors in 1 file",
    ]
    assert done.stderr == ""


def test_valid_configuration(data: Path, capsys) -> None:
    kinds = ["serviceentry", "workloadentry", "virtualservice", "destinationrule", "sidecar"]
    assert main(["analyze", *(str(data / f"{kind}.yaml") for kind in kinds), str(data / "tree")]) == 0
    assert capsys.readouterr().out == "ok: 9 resources in 8 files\n"


def test_singular_summary(data: Path, capsys) -> None:
    assert main(["analyze", str(data / "tree" / "a.yml")]) == 0
    assert capsys.readouterr().out == "ok: 1 resource in 1 file\n"


def test_errors_in_several_files(data: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.yaml"
    assert main(["analyze", str(data / "three-mistakes.yaml"), str(missing)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == [f"{missing}: no such file or directory", "4 errors in 2 files"]


def test_paths_are_required(capsys) -> None:
    try:
        main(["analyze"])
    except SystemExit as exit:
        assert exit.code == 2
    assert "PATH" in capsys.readouterr().err
