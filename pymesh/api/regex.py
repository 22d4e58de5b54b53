"""Regular expressions in Istio's dialect: RE2, compiled once, as Envoy compiles them.

Istio's StringMatch `regex` is an "RE2 style regex-based match" (Istio's networking reference;
analyzer message IST0122), which Istio hands to Envoy as a `safe_regex` on the google_re2 engine,
and "the regex is matched against the full string, not as a partial match" (Envoy's
type.matcher.v3.RegexMatcher). So validation and matching both use RE2 through the google-re2
binding: an expression RE2 refuses (backreferences, lookaround, `\\Z`) is a config error, one that
only Python's `re` refuses (`\\pL`, `\\Q...\\E`, `\\z`) is fine, and a match costs time linear in
the input, whatever the expression.

The size limits are Istio's: its validation refuses a regex longer than 1024 characters, and the
runtime it gives Envoy raises `re2.max_program_size.error_level` from Envoy's default of 100 to
32768 (the program size is RE2's estimate of a compiled regex's work per input byte).

RE2 is imported on first use, so a proxy whose configuration has no regex does not load it (its
library adds 2.5 MB to each worker's RSS).
"""

from __future__ import annotations

MAX_LENGTH = 1024
MAX_PROGRAM_SIZE = 32768


class RegexError(ValueError):
    """A regex RE2 (or Istio's size limits) refuses; the message is RE2's own."""


def compile_regex(pattern: str, ignore_case: bool = False):
    """The compiled RE2 program for `pattern` (UTF-8, as Envoy's), or RegexError."""
    import re2  # here, not at the top: see the module's docstring

    if not pattern:
        raise RegexError("regex string match should not be empty")
    if len(pattern) > MAX_LENGTH:
        raise RegexError(f"regex is too large, max length allowed is {MAX_LENGTH}")
    options = re2.Options()
    options.never_capture = True  # routes only ask "does it match": no submatches to track
    options.log_errors = False  # failures come back as exceptions; matching must never log
    options.case_sensitive = not ignore_case
    try:
        program = re2.compile(pattern.encode("utf-8"), options)
    except UnicodeEncodeError:
        raise RegexError("regex is not valid UTF-8") from None
    except re2.error as exc:
        raise RegexError(_text(exc)) from None
    if program.programsize > MAX_PROGRAM_SIZE:
        raise RegexError(f"regex program size {program.programsize} exceeds the maximum of {MAX_PROGRAM_SIZE}")
    return program


def _text(exc: Exception) -> str:
    """RE2's message (the binding passes it as bytes)."""
    message = exc.args[0] if exc.args else ""
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
