"""Header values as Envoy reads them in a route's header operations: "%" starts a command
(`%HOSTNAME%`, `%REQ(x-id)%`, `%START_TIME([...])%`), "%%" is a literal "%".

Istio validates them with a port of Envoy's header_parser.cc (pkg/config/validation
header_value_validator.go); this is the same state machine. pymesh does not substitute commands:
a value that uses one would be sent differently from Envoy, so it is refused by name rather than
sent as written; a value without one is the literal text, "%%" read as "%".
"""

from __future__ import annotations

_LITERAL, _NAME, _ARRAY, _STRING, _JSON, _DELIMITER, _ARGS_END, _END = range(8)


class HeaderValueError(ValueError):
    pass


def literal_value(value: str) -> str:
    """The text Envoy sends for `value`; HeaderValueError when it is malformed or uses a command."""
    out: list[str] = []
    commands: list[str] = []
    state, pos, start = _LITERAL, 0, 0
    while pos < len(value):
        ch = value[pos]
        if state == _LITERAL:
            if ch == "%":
                if pos + 1 == len(value):
                    raise HeaderValueError("invalid header configuration. Un-escaped %")
                if value[pos + 1] == "%":
                    out.append("%")
                    pos += 1
                else:
                    state, start = _NAME, pos
            else:
                out.append(ch)
        elif state == _NAME:
            if ch == "%":
                state = _LITERAL
                commands.append(value[start:pos + 1])
            elif ch == "(":
                state = _ARRAY
        elif state == _ARRAY:
            if ch == "[":
                state = _STRING
            elif ch != " ":
                state = _JSON
        elif state == _DELIMITER:
            if ch == ",":
                state = _STRING
            elif ch == "]":
                state = _ARGS_END
            elif ch != " ":
                raise HeaderValueError("invalid header configuration. Expecting ',', ']', or whitespace")
        elif state == _STRING:
            if ch == '"':
                state = _JSON
            elif ch != " ":
                raise HeaderValueError("invalid header configuration. Expecting '\"'")
        elif state == _JSON:
            if ch == "\\":
                if pos + 1 == len(value):
                    raise HeaderValueError("invalid header configuration. Un-terminated backslash in JSON string")
                pos += 1
            elif ch == ")":
                state = _END
            elif ch == '"':
                state = _DELIMITER
        elif state == _ARGS_END:
            if ch == ")":
                state = _END
            elif ch != " ":
                raise HeaderValueError("invalid header configuration. Expecting ')' or whitespace")
        elif state == _END:
            if ch == "%":
                state = _LITERAL
                commands.append(value[start:pos + 1])
            elif ch != " ":
                raise HeaderValueError("invalid header configuration. Expecting '%' or whitespace")
        pos += 1
    if state != _LITERAL:
        raise HeaderValueError(f"invalid header configuration. Un-terminated variable expression {value!r}")
    if commands:
        raise HeaderValueError(f"Envoy's {commands[0]} substitution is not supported by pymesh yet "
                               "(write %% for a literal %)")
    return "".join(out)
