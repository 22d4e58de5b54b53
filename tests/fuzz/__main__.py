"""python -m tests.fuzz TARGET [--seconds N] [--work DIR] [libFuzzer flags or input files ...]

Runs one target (codec, proxy) under atheris, coverage-guided over pymesh's Python code, seeded
with tests/fuzz/corpus/*. New inputs and crash files go to the work directory, never into the
repository: add a crash file to the corpus by hand once it is understood. Given input files
instead of directories, libFuzzer runs just those (to reproduce a crash).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .targets import CORPUS, MAX_LEN, TARGETS

DICTIONARY = Path(__file__).resolve().parent / "http.dict"


def libfuzzer_args(target: str, seconds: int, work: Path, extra: list[str]) -> list[str]:
    work.mkdir(parents=True, exist_ok=True)
    inputs = [arg for arg in extra if not arg.startswith("-")]
    flags = [arg for arg in extra if arg.startswith("-")]
    args = [
        f"python -m tests.fuzz {target}",
        f"-max_total_time={seconds}",
        f"-max_len={MAX_LEN[target]}",
        f"-dict={DICTIONARY}",
        f"-artifact_prefix={work}/",
        "-timeout=20",
        "-print_final_stats=1",
    ]
    if not inputs:
        corpus = work / "corpus"
        corpus.mkdir(exist_ok=True)
        inputs = [str(corpus)] + [str(d) for d in sorted(CORPUS.iterdir()) if d.is_dir()]
    return args + flags + inputs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--seconds", type=int, default=60, help="stop after this long (default 60)")
    parser.add_argument("--work", type=Path, help="new inputs and crashes (default: TMPDIR/pymesh-fuzz/TARGET)")
    options, extra = parser.parse_known_args(argv)
    try:
        import atheris
    except ImportError:
        print("atheris is not installed (pip install atheris); `pytest tests/fuzz` replays the corpus without it",
              file=sys.stderr)
        return 2
    import h11, httptools, uvloop, yaml  # noqa: E401,F401 - imported first, so only pymesh is instrumented

    work = options.work or Path(tempfile.gettempdir()) / "pymesh-fuzz" / options.target
    with atheris.instrument_imports(include=["pymesh"]):
        check = TARGETS[options.target]()
    atheris.Setup(libfuzzer_args(options.target, options.seconds, work, extra), check)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
