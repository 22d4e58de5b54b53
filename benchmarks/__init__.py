"""Benchmarks for pymesh: the latency, CPU and memory cost of a hop, measured against real peers.

Run from the repository root: `python -m benchmarks run`, `python -m benchmarks check RESULT.json`,
`python -m benchmarks scale`. See benchmarks/README.md for the method and the latest figures.
"""

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "configs"
RESULTS_DIR = PACKAGE_DIR / "results"
