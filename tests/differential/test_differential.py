"""Request smuggling, proved closed by difference: every mutation in the corpus goes through
`pymesh proxy` and through Envoy to the same kind of recording upstream, and for each one
(test id = mutation name):

- pymesh either refuses it, or the upstream parses exactly the requests pymesh's access log says it
  routed (method, target, body length) and nothing else is left on the upstream connection;
- a mutation Envoy refuses and pymesh forwards fails unless known_differences.yaml lists it, with
  the reason, and the README's security section mirrors that entry.

Envoy is held to the same invariant and its violations are reported in the summary (they point at
the harness, or at the reference); the summary table is printed at the end of the session.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("h11", reason="h11 (the upstream's parser) is in the test extra: pip install -e '.[test]'")

import corpus  # noqa: E402
import launch  # noqa: E402
import session  # noqa: E402
import verdict  # noqa: E402

HERE = Path(__file__).resolve().parent
ALLOW_LIST = HERE / "known_differences.yaml"
README = HERE.parent.parent / "README.md"
CORPUS = corpus.corpus()
MIN_CORPUS = 500


@pytest.fixture(scope="session")
def judgements(tmp_path_factory, summary_lines):
    summary_lines.append(f"differential corpus: {len(CORPUS)} mutations")
    missing = launch.envoy_missing()
    if missing:
        summary_lines.append(f"skipped: {missing}")
        pytest.skip(missing)
    workdir = tmp_path_factory.mktemp("differential")
    allowed = verdict.load_allowed(ALLOW_LIST)
    runs = session.run(workdir, CORPUS)
    judged, orphans = verdict.judge(CORPUS, runs, allowed)
    summary_lines[:] = verdict.summary(judged, allowed)
    summary_lines += [f"untraceable upstream traffic: {o}" for o in orphans]
    envoy_bad = [j.mutation.name for j in judged.values() if j.outcomes["envoy"].problems]
    summary_lines += [f"envoy violates the invariant on: {name}" for name in envoy_bad]
    summary_lines += [f"{name} wrote a traceback to its stderr (under {workdir / name})"
                      for name, run in runs.items() if "Traceback" in run.stderr]
    report = workdir / "report.txt"
    report.write_text("\n\n".join(j.report() for j in judged.values()))
    summary_lines.append(f"full report: {report}")
    (workdir / "categories.json").write_text(json.dumps({n: j.category for n, j in judged.items()}, indent=1))
    return judged, orphans


@pytest.mark.timeout(300)  # the first test also runs the whole corpus (the session fixture)
@pytest.mark.parametrize("mutation", CORPUS, ids=lambda m: m.name)
def test_mutation(judgements, mutation):
    judged, _ = judgements
    judgement = judged[mutation.name]
    failures = judgement.failures()
    assert not failures, "\n".join(failures) + "\n" + judgement.report()


def test_no_untraceable_upstream_traffic(judgements):
    """Whatever reached an upstream can be traced to the mutation that sent it (else a request was
    mangled beyond recognition, which is itself a failure)."""
    _, orphans = judgements
    assert not orphans, "\n".join(orphans)


@pytest.mark.parametrize("name", ["cl/5/http1.1", "te/chunked/te-only", "upgrade/websocket/101/frame"])
def test_plain_requests_reach_the_upstream(judgements, name):
    """The harness is not vacuous: well-formed requests go through both proxies alike."""
    judged, _ = judgements
    assert judged[name].category == "both forward identically", judged[name].report()


def test_envoy_holds_the_invariant(judgements):
    """The reference passes the oracle; if it does not, the oracle (or Envoy) is wrong."""
    judged, _ = judgements
    bad = [j.report() for j in judged.values() if j.outcomes["envoy"].problems]
    assert not bad, "\n\n".join(bad[:5])


def test_corpus_is_large_and_stable():
    assert len(CORPUS) >= MIN_CORPUS
    assert [m.name for m in corpus.corpus()] == [m.name for m in CORPUS]
    assert [m.data for m in corpus.corpus()] == [m.data for m in CORPUS]


def test_allow_list_is_mirrored_in_readme():
    text = README.read_text()
    missing = [e["mutation"] for e in verdict.load_allowed(ALLOW_LIST) if e["mutation"] not in text]
    assert not missing, f"known_differences.yaml entries not in README.md's security section: {missing}"
