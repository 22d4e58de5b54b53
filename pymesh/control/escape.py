"""Client-supplied text made safe to print on a terminal or in a log line.

Node ids, labels and NACK errors come from whoever connected. Printed raw, an escape sequence
could rewrite the operator's terminal, a newline could add a fake table row or log line, and a
bidirectional override or an odd space could make text read differently from what it is.
`visible` shows every character Python does not call printable (controls, format characters
such as U+202E, separators, unassigned code points; every space but " ") as a visible escape
(\\x1b, \\n, \\u202e), a backslash as \\\\ so the escapes are unambiguous, and cuts very long
text, saying how much was cut.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def visible(text: str, limit: int = 1000) -> str:
    """`text` with every unsafe character escaped, at most `limit` characters of it."""
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    if text.isprintable() and "\\" not in text:
        shown = text
    else:
        shown = "".join(c if c.isprintable() and c != "\\" else _escape(c) for c in text)
    return shown + (f"... ({cut} more characters)" if cut > 0 else "")


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
