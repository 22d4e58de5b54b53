"""`python -m benchmarks regex --smoke`: the harness runs and records every case (no figure judged)."""

import json

from benchmarks.__main__ import main
from benchmarks.regex import HOSTILE, ORDINARY, SMOKE


def test_smoke_records_every_case(tmp_path, capsys):
    assert main(["regex", "--smoke", "--out", str(tmp_path)]) == 0
    [path] = tmp_path.glob("regex-*.json")
    result = json.loads(path.read_text())
    assert len(result["hostile"]) == len(HOSTILE) * len(SMOKE["lengths"])
    assert [r["path"] for r in result["ordinary"]] == [path for _, _, path in ORDINARY]
    # Python's re is never given a value longer than its bound, which would not terminate
    assert all("re_us" not in r for r in result["hostile"] if r["length"] > SMOKE["re_max_length"])
    assert "== Hostile values" in capsys.readouterr().out
