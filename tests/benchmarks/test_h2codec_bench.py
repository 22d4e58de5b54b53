"""`python -m benchmarks h2codec --smoke`: every case runs and prints its figure (none is judged)."""

from benchmarks.__main__ import main


def test_h2codec_smoke(capsys):
    assert main(["h2codec", "--smoke"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| server") or line.startswith("| client")]
    assert len(rows) == 4
    for side, peer, reference, ours, ratio in rows:
        assert float(reference) > 0 and float(ours) > 0
