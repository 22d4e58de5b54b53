"""The corpus of real Istio and Gateway API YAML (data/, listed with its provenance in
MANIFEST.yaml), judged one document at a time as Istio judges one resource at a time.

Each in-scope document (an Istio or Gateway API group; Kubernetes' own kinds in the same files
are left out) is loaded on its own, with the other documents' lines blanked so that errors keep
the file's line numbers, through `pymesh.api.load.load_text`, the loader `pymesh analyze` uses.
It is *accepted* when that load reports no error (warnings allowed). The manifest says which
documents Istio rejects; every other document is one Istio accepts. A document pymesh does not
read as its kind (unknown, another API group's, or named and not applied) is *unread*: neither
accepted nor rejected.

Run as a script to print the acceptance rate per kind (`--markdown` for the README's table,
`--write FILE` to replace it in FILE, `--errors` for every disagreement with pymesh's errors):

    python tests/corpus/acceptance.py [--markdown] [--errors] [--write README.md]
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
MANIFEST = HERE / "MANIFEST.yaml"
REPOSITORY = HERE.parent.parent
if str(REPOSITORY) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPOSITORY))

from pymesh.api.load import load_text  # noqa: E402

# API groups whose resources the corpus judges (Istio's and the Gateway API's).
GROUPS = frozenset({
    "networking.istio.io", "security.istio.io", "telemetry.istio.io", "extensions.istio.io",
    "gateway.networking.k8s.io", "gateway.networking.x-k8s.io",
})


# pymesh does not read the kind, or not in this API group (a Gateway API Gateway is not Istio's),
# or loads it as a kind it does not implement (named, not applied).
_KIND_UNKNOWN = re.compile(r" kind: kind \S+ is not supported( yet)?$| apiVersion: apiVersion \S+ is not valid for "
                           r"| kind: (warning: )?.* not applied: pymesh does not implement ")


@dataclass(frozen=True)
class Document:
    """One resource of the corpus and what Istio and pymesh say of it."""

    file: str  # relative to data/ (the manifest's `file`)
    index: int  # 0-based among the file's non-empty documents
    line: int  # where the document starts
    group: str
    kind: str
    name: str
    expected_valid: bool
    why: str  # why Istio rejects it (invalid documents)
    errors: tuple[str, ...] = field(default=())  # pymesh's, as `pymesh analyze` prints them
    warnings: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        return f"{self.file}#{self.index}"

    @property
    def label(self) -> str:
        return f"{self.kind} (Gateway API)" if self.group.startswith("gateway.") else self.kind

    @property
    def unread(self) -> bool:
        """Refused because pymesh does not know the kind (in this group): neither accepted nor
        judged, whatever it then says of a spec it read as another kind."""
        return any(_KIND_UNKNOWN.search(problem) for problem in self.errors + self.warnings)

    @property
    def accepted(self) -> bool:
        return not self.errors and not self.unread

    @property
    def rejected(self) -> bool:
        return bool(self.errors) and not self.unread

    @property
    def agrees(self) -> bool:
        return self.accepted if self.expected_valid else self.rejected


@dataclass(frozen=True)
class Entry:
    """One MANIFEST.yaml entry: a file and where it came from."""

    file: str
    repo: str
    path: str
    commit: str
    invalid: dict[int, str]  # document index -> why Istio rejects it
    note: str = ""
    strip: tuple[str, ...] = ()  # top-level keys the source's own test removes before validating


def manifest() -> list[Entry]:
    entries = yaml.safe_load(MANIFEST.read_text())["files"]
    return [
        Entry(e["file"], e["repo"], e["path"], e.get("commit", ""),
              {int(k): v for k, v in (e.get("invalid") or {}).items()}, e.get("note", ""),
              tuple(e.get("strip", ())))
        for e in entries
    ]


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SEPARATOR = re.compile(r"^---[ \t]*(#.*)?$")
_TOP = re.compile(r"^(apiVersion|kind):[ \t]*['\"]?([^'\"#\s]+)")


@dataclass(frozen=True)
class Span:
    """One non-empty document of a file: its lines (0-based, inclusive) and what it says it is."""

    first: int
    last: int
    api_version: str
    kind: str
    name: str


def spans(text: str) -> list[Span]:
    """Every non-empty document. A file PyYAML cannot read as a whole (Go's YAML reader is more
    lenient: `[001:db8::]`) is split at its `---` lines, and a document that still does not
    compose is named by its top-level apiVersion and kind lines."""
    try:
        return [_span(node) for node in yaml.compose_all(text, Loader=_LOADER) if not _empty(node)]
    except yaml.YAMLError:
        pass
    lines, found, start = text.splitlines(keepends=True), [], 0
    for n, line in enumerate(lines + ["---\n"]):
        if _SEPARATOR.match(line):
            found.extend(_chunk(lines, start, n - 1))
            start = n + 1
    return found


def _empty(node: object) -> bool:
    return node is None or (isinstance(node, yaml.ScalarNode) and node.value == "")


def _span(node: yaml.Node, offset: int = 0) -> Span:
    end = node.end_mark.line if node.end_mark.column else node.end_mark.line - 1
    name = _scalar(_field(_field(node, "metadata"), "name"))
    return Span(offset + node.start_mark.line, offset + end, _scalar(_field(node, "apiVersion")),
                _scalar(_field(node, "kind")), name)


def _chunk(lines: list[str], first: int, last: int) -> list[Span]:
    text = "".join(lines[first:last + 1])
    try:
        nodes = [node for node in yaml.compose_all(text, Loader=_LOADER) if not _empty(node)]
        return [_span(node, first) for node in nodes]
    except yaml.YAMLError:
        top = dict(m.groups() for m in map(_TOP.match, lines[first:last + 1]) if m)
        return [Span(first, last, top.get("apiVersion", ""), top.get("kind", ""), "")] if top else []


def _isolated(lines: list[str], first: int, last: int, strip: tuple[str, ...]) -> str:
    """The text with every line outside [first, last] (0-based) blanked, and the one-line
    top-level `strip` keys: one document, same line numbers."""
    def kept(n: int, line: str) -> bool:
        return first <= n <= last and not any(line.startswith(f"{key}:") for key in strip)

    return "".join(line if kept(n, line) else "\n" for n, line in enumerate(lines))


def _field(node: object, key: str) -> object:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None


def _scalar(node: object) -> str:
    return node.value if isinstance(node, yaml.ScalarNode) else ""


def judge(entry: Entry) -> list[Document]:
    """Every in-scope document of one file, each loaded on its own."""
    text = (DATA / entry.file).read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    documents = []
    for index, span in enumerate(spans(text)):
        group = span.api_version.partition("/")[0]
        if group not in GROUPS:
            continue
        result = load_text(_isolated(lines, span.first, span.last, entry.strip), entry.file)
        documents.append(Document(
            file=entry.file, index=index, line=span.first + 1, group=group, kind=span.kind, name=span.name,
            expected_valid=index not in entry.invalid, why=entry.invalid.get(index, ""),
            errors=tuple(str(error) for error in result.errors),
            warnings=tuple(str(warning) for warning in getattr(result, "warnings", ())),
        ))
    return documents


def corpus() -> list[Document]:
    return [document for entry in manifest() for document in judge(entry)]


@dataclass
class Rate:
    valid: int = 0
    accepted: int = 0  # of the valid
    invalid: int = 0
    rejected: int = 0  # of the invalid


def rates(documents: list[Document]) -> dict[str, Rate]:
    """Per kind; the Gateway API's kinds are marked, as `Gateway` is also Istio's."""
    table: dict[str, Rate] = {}
    for d in documents:
        rate = table.setdefault(d.label, Rate())
        if d.expected_valid:
            rate.valid += 1
            rate.accepted += d.accepted
        else:
            rate.invalid += 1
            rate.rejected += d.rejected
    return dict(sorted(table.items()))


def _fraction(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f}%)" if whole else "-"


def table(documents: list[Document], markdown: bool) -> str:
    rows = [(kind, _fraction(r.accepted, r.valid), _fraction(r.rejected, r.invalid))
            for kind, r in rates(documents).items()]
    total = Rate()
    for r in rates(documents).values():
        total.valid += r.valid
        total.accepted += r.accepted
        total.invalid += r.invalid
        total.rejected += r.rejected
    rows.append(("all", _fraction(total.accepted, total.valid), _fraction(total.rejected, total.invalid)))
    header = ("kind", "valid accepted", "invalid rejected")
    if markdown:
        lines = [f"| {' | '.join(header)} |", "| --- | --- | --- |"]
        lines += [f"| {' | '.join(row)} |" for row in rows]
        return "\n".join(lines)
    width = max(len(row[0]) for row in rows + [header])
    return "\n".join(f"{a:<{width}}  {b:<20}  {c}" for a, b, c in [header, *rows])


BEGIN, END = "<!-- corpus-rate:begin -->", "<!-- corpus-rate:end -->"


def write_table(path: Path, markdown: str) -> None:
    """Replace the table between the markers (a README regenerated after every merge)."""
    text = path.read_text()
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} markers")
    path.write_text(f"{head}{BEGIN}\n{markdown}\n{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print the README's table")
    parser.add_argument("--errors", action="store_true", help="list every disagreement")
    parser.add_argument("--write", metavar="FILE", action="append", default=[],
                        help=f"replace the table between {BEGIN} and {END} in FILE")
    args = parser.parse_args(argv)
    documents = corpus()
    print(table(documents, args.markdown))
    for path in args.write:
        write_table(Path(path), table(documents, markdown=True))
    if args.errors:
        for d in documents:
            if not d.agrees:
                said = "not read" if d.unread else ("rejected" if d.expected_valid else "accepted")
                verdict = f"valid, {said}" if d.expected_valid else f"invalid ({d.why}), {said}"
                print(f"\n{d.key} {d.label}/{d.name}: {verdict}")
                for error in d.errors:
                    print(f"    {error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
