"""The corpus of real Istio and Gateway API YAML (see acceptance.py and MANIFEST.yaml): every
document Istio accepts is accepted, every document Istio rejects is rejected, one by one.

A disagreement fails the test unless a known gap below covers it, with its reason. The gaps
must shrink: an entry that no longer covers any disagreement fails the test too, so it is
removed the day the work lands (the lead trims them after each merge).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from acceptance import DATA, GROUPS, Document, corpus, manifest, spans

DOCUMENTS = corpus()
BY_KEY = {d.key: d for d in DOCUMENTS}

# Kinds whose documents may disagree today, and why.
KIND_GAPS = {
    "GRPCRoute (Gateway API)": "pilot's grpc.yaml uses an apiVersion that does not exist",
    "EnvoyFilter": "validate: the rule for kinds pymesh does not implement (a valid one must load, "
                   "reported as not applied; an invalid one is still Istio's to reject)",
    "WasmPlugin": "validate: the rule for kinds pymesh does not implement",
}

# Errors pymesh gives today for valid Istio YAML, by message: a valid document rejected with
# only errors matching these is a known gap.
MESSAGE_GAPS = {
}

# One-off disagreements, by document (file#index): why each is not fixed here.
DOCUMENT_GAPS = {
    "istio/istio/galley/testdatasets/validation/dataset/security-v1beta1-PeerAuthentication-valid.yaml#0":
        "`peerLevelMtls` is no Istio field (a typo of portLevelMtls in Istio's own dataset): the API "
        "server prunes unknown fields, so Istio accepts the rest; pymesh reports an unknown field "
        "by design. validate decides whether unknown fields stay errors.",
    "istio/istio/samples/websockets/route.yaml#1":
        "`websocketUpgrade` was removed from Istio's API (it is in no CRD schema of Istio 1.x, and "
        "WebSocket upgrades need no flag): the API server prunes it, Istio accepts the rest; "
        "pymesh reports an unknown field. As above, validate's call.",
    "istio/istio/pkg/config/validation/testdata/crds/serviceentry-valid.yaml#0":
        "`addresses: [1.2.3.4, 001:db8::]`: Go's YAML reader takes `001:db8::` in a flow sequence as a "
        "string, PyYAML (YAML 1.1, which pymesh's loader is built on) stops at the `:` before `]`; "
        "the file's other documents load. A YAML-dialect difference, not a validation one.",
}


def _covered(d: Document) -> str | None:
    """The gap that explains a disagreeing document, or None."""
    if d.label in KIND_GAPS:
        return KIND_GAPS[d.label]
    if d.key in DOCUMENT_GAPS:
        return DOCUMENT_GAPS[d.key]
    if d.expected_valid and d.errors:
        reasons = {next((why for pattern, why in MESSAGE_GAPS.items() if re.search(pattern, e)), None)
                   for e in d.errors}
        if None not in reasons:
            return "; ".join(sorted(reasons))
    return None


def _verdict(d: Document) -> str:
    said = "accepted" if d.accepted else ("not read" if d.unread else "rejected")
    istio = "valid" if d.expected_valid else f"invalid: {d.why}"
    return f"{d.key} ({d.label} {d.name!r}, Istio: {istio}) is {said} by pymesh\n" + "\n".join(d.errors)


@pytest.mark.parametrize("key", sorted(BY_KEY))
def test_pymesh_agrees_with_istio(key: str):
    d = BY_KEY[key]
    if d.agrees:
        assert key not in DOCUMENT_GAPS, f"{key} agrees now: remove it from DOCUMENT_GAPS"
        return
    gap = _covered(d)
    if gap is None:
        pytest.fail(_verdict(d))
    pytest.xfail(f"known gap: {gap}")


def test_every_gap_still_covers_a_disagreement():
    disagreeing = [d for d in DOCUMENTS if not d.agrees]
    kinds = {d.label for d in disagreeing}
    assert [kind for kind in KIND_GAPS if kind not in kinds] == [], "these kinds agree now: remove them"
    used = {p for p in MESSAGE_GAPS for d in disagreeing for e in d.errors if re.search(p, e)}
    assert [p for p in MESSAGE_GAPS if p not in used] == [], "no document gives these errors now: remove them"
    assert [k for k in DOCUMENT_GAPS if k not in BY_KEY] == [], "no such documents"


def test_the_corpus_is_large_and_has_both_sides():
    valid = [d for d in DOCUMENTS if d.expected_valid]
    invalid = [d for d in DOCUMENTS if not d.expected_valid]
    assert len(valid) >= 450 and len(invalid) >= 110
    assert len({d.label for d in DOCUMENTS}) >= 15


def test_the_manifest_names_every_file_once_with_its_source():
    entries = manifest()
    files = [e.file for e in entries]
    assert len(files) == len(set(files))
    stored = {p.relative_to(DATA).as_posix() for p in DATA.rglob("*.yaml")}
    assert stored <= set(files), f"files without provenance: {sorted(stored - set(files))}"
    for e in entries:
        assert (DATA / e.file).is_file(), e.file
        assert e.repo in {"istio/istio", "istio/istio.io", "istio/api", "kubernetes-sigs/gateway-api"}, e.file
        assert e.path and (e.commit == "" or re.fullmatch(r"[0-9a-f]{40}", e.commit)), e.file


def test_every_invalid_verdict_names_a_judged_document():
    judged = defaultdict(set)
    for d in DOCUMENTS:
        judged[d.file].add(d.index)
    for e in manifest():
        assert set(e.invalid) <= judged[e.file], f"{e.file}: invalid {sorted(e.invalid)} are not judged documents"
        assert all(why for why in e.invalid.values()), f"{e.file}: say why Istio rejects it"


def test_only_istio_and_gateway_api_documents_are_judged():
    for d in DOCUMENTS:
        assert d.group in GROUPS
    kinds = {span.kind for e in manifest() for span in spans((DATA / e.file).read_text())
             if span.api_version.partition("/")[0] in GROUPS}
    assert kinds == {d.kind for d in DOCUMENTS}


def test_no_field_of_istios_crds_is_unknown_to_pymesh():
    """An Istio field is never called unknown: each field of Istio's CRD schemas (istio-crd-fields.json,
    by the pymesh message that reads it) is read, known as not supported, or ignored with a warning."""
    from pymesh.api import shapes

    crd = json.loads((Path(__file__).parent / "istio-crd-fields.json").read_text())["messages"]
    table = {value.name: value for value in vars(shapes).values() if isinstance(value, shapes.Shape)}
    unknown = {}
    for message, fields in crd.items():
        shape = table[message]
        known = shape.fields | shape.unsupported | getattr(shape, "ignored", frozenset())
        if missing := sorted(set(fields) - known):
            unknown[message] = missing
    assert unknown == {}
