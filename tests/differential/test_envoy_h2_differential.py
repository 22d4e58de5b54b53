"""HTTP/2 frame sequences, proved handled alike by difference: every case of h2_corpus goes as
prior-knowledge h2c through `pymesh proxy` and through Envoy (codec AUTO) to the same kind of
recording HTTP/1.1 upstream, and for each case (test id = case name):

- what the upstream parsed is accounted for by what pymesh's client saw;
- a watched stream Envoy refuses (RST_STREAM, GOAWAY, local 4xx) pymesh refuses too, unless
  known_h2_differences.yaml lists the case with the reason (error codes may differ; both are
  reported);
- a stream both forward reaches the upstream with the same method, target and body.

The summary table is printed at the end of the session, with every case that is neither "both
refuse" nor "both accept identically".
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("h11", reason="h11 (the upstream's parser) is in the test extra: pip install -e '.[test]'")
pytest.importorskip("hyperframe", reason="hyperframe (the client's frame parser) comes with h2")

import h2_client  # noqa: E402
import h2_corpus  # noqa: E402
import h2_verdict  # noqa: E402
import launch  # noqa: E402
import session  # noqa: E402
import yaml  # noqa: E402

ALLOW_LIST = Path(__file__).resolve().parent / "known_h2_differences.yaml"
CORPUS = h2_corpus.corpus()


@pytest.fixture(scope="session")
def h2_judgements(tmp_path_factory, summary_lines):
    missing = launch.envoy_missing()
    if missing:
        summary_lines.append(f"h2 differential skipped: {missing}")
        pytest.skip(missing)
    allowed = yaml.safe_load(ALLOW_LIST.read_text()) or []
    workdir = tmp_path_factory.mktemp("h2-differential")
    runs = session.run(workdir, CORPUS, (launch.Pymesh, launch.EnvoyH2), h2_client.run)
    judged, stray = h2_verdict.judge(CORPUS, {n: r.views for n, r in runs.items()},
                                     {n: r.connections for n, r in runs.items()}, allowed)
    summary_lines.extend(h2_verdict.summary(judged))
    summary_lines.extend(f"h2 stray upstream traffic: {s}" for s in stray)
    summary_lines.extend(f"h2: envoy violates the invariant on {j.case.name}" for j in judged.values()
                         if j.sides["envoy"].problems)
    summary_lines.extend(f"h2: {name} wrote a traceback to its stderr (under {workdir / name})"
                         for name, run in runs.items() if "Traceback" in run.stderr)
    (workdir / "report.txt").write_text("\n\n".join(j.report() for j in judged.values()))
    summary_lines.append(f"h2 full report: {workdir / 'report.txt'}")
    return judged, stray


@pytest.mark.timeout(120)  # the first test also runs the whole corpus (the session fixture)
@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_h2_case(h2_judgements, case):
    judged, _ = h2_judgements
    failures = judged[case.name].failures()
    assert not failures, "\n".join(failures) + "\n" + judged[case.name].report()


def test_h2_no_stray_upstream_traffic(h2_judgements):
    _, stray = h2_judgements
    assert not stray, "\n".join(stray)


@pytest.mark.parametrize("name", ["valid/get", "valid/post-trailers", "valid/interleaved", "valid/continuation"])
def test_h2_valid_requests_reach_the_upstream(h2_judgements, name):
    """The harness is not vacuous: well-formed streams go through both proxies alike."""
    judged, _ = h2_judgements
    assert judged[name].category == "both accept identically", judged[name].report()


def test_h2_envoy_holds_the_accounting(h2_judgements):
    judged, _ = h2_judgements
    bad = [j.report() for j in judged.values() if j.sides["envoy"].problems]
    assert not bad, "\n\n".join(bad[:5])


def test_h2_corpus_is_stable():
    assert 40 <= len(CORPUS) <= 100
    assert [(c.name, c.data) for c in h2_corpus.corpus()] == [(c.name, c.data) for c in CORPUS]
    assert len({c.name for c in CORPUS}) == len(CORPUS)
