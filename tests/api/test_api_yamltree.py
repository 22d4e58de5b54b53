"""The line-aware YAML reader: every mapping, key and item knows its line."""

from __future__ import annotations

import pytest

from pymesh.api.yamltree import LineMap, LineSeq, Problem, YAMLSyntaxError, read_documents


def test_lines_of_mappings_keys_and_items() -> None:
    (document,) = read_documents("# comment\na: 1\nb:\n  - x: 1\n    y: [1, 2]\n  - 3\n")
    root = document.root
    assert document.line == 2
    assert isinstance(root, LineMap) and root == {"a": 1, "b": [{"x": 1, "y": [1, 2]}, 3]}
    assert root.key_lines == {"a": 2, "b": 3}
    assert isinstance(root["b"], LineSeq) and root["b"].item_lines == [4, 6]
    assert root["b"][0].line == 4 and root["b"][0].key_lines == {"x": 4, "y": 5}
    assert root["b"][0]["y"].item_lines == [5, 5]


def test_multiple_documents_skip_empty_ones() -> None:
    documents = read_documents("---\na: 1\n---\n---\n# nothing\n---\nb: 2\n...\n")
    assert [d.root for d in documents] == [{"a": 1}, {"b": 2}]
    assert [d.line for d in documents] == [2, 7]
    assert read_documents("") == [] and read_documents("# only a comment\n") == []


def test_duplicate_keys_are_problems_first_value_kept() -> None:
    (document,) = read_documents("a: 1\nb: 2\na: 3\n")
    assert document.root == {"a": 1, "b": 2}
    assert document.problems == [Problem(3, "", "duplicate key 'a' (first at line 1)")]


def test_merge_keys_may_be_overridden() -> None:
    (document,) = read_documents("base: &b {k: v, j: 1}\nd:\n  <<: *b\n  k: 2\n")
    assert document.root["d"] == {"k": 2, "j": 1}
    assert document.problems == []


def test_unknown_tags_are_problems_not_objects() -> None:
    (document,) = read_documents("a: !!python/object/apply:os.system [echo]\nb: !custom 1\nc: !!str 5\n")
    assert document.root == {"a": None, "b": None, "c": "5"}
    assert [(p.line, p.path) for p in document.problems] == [(1, "a"), (2, "b")]
    assert document.problems[1].message == "unsupported YAML tag '!custom'"


@pytest.mark.parametrize("value, message", [
    ("2001-13-45", "'2001-13-45' is not a valid YAML timestamp"),  # each raised out of the loader
    ("2001-02-30 10:00:00", "'2001-02-30 10:00:00' is not a valid YAML timestamp"),
    ("1" * 5000, f"'{'1' * 40}... (5000 characters)' is not a valid YAML int"),
    ("!!int 'x'", "'x' is not a valid YAML int"),
    ("!!float 'x'", "'x' is not a valid YAML float"),
    ("!!bool 'x'", "'x' is not a valid YAML bool"),
    ("!!timestamp 'x'", "'x' is not a valid YAML timestamp"),
])
def test_scalars_their_constructor_cannot_make_are_problems(value: str, message: str) -> None:
    (document,) = read_documents(f"a: 1\nb: {value}\n")
    assert document.root == {"a": 1, "b": None}
    assert document.problems == [Problem(2, "b", message + " (quote it for a string)")]


def test_complex_keys_and_recursive_aliases_are_problems() -> None:
    (document,) = read_documents("? [a, b]\n: 1\nc: &x [*x]\n")
    assert document.problems == [
        Problem(1, "", "mapping keys must be plain strings"),
        Problem(3, "c[0]", "recursive YAML alias is not allowed"),
    ]


@pytest.mark.parametrize(
    "text, line, message",
    [
        ("a: [1, 2\nb: 3\n", 2, "invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence)"),
        ("a: 1\nb: c: d\n", 2, "invalid YAML: mapping values are not allowed in this context"),
        ("a: 1\n  b: 2\n", 2, "invalid YAML: mapping values are not allowed in this context"),
        ("a: '\n", 2, "invalid YAML: found unexpected end of stream (while scanning a quoted scalar)"),
    ],
)
def test_syntax_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(YAMLSyntaxError) as info:
        read_documents(text)
    assert (info.value.line, info.value.message) == (line, message)
