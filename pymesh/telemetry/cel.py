"""The small part of CEL that Istio's Telemetry examples use, compiled once per snapshot.

Access-log filters (`response.code >= 400`, `response.code >= 400 || xds.cluster_name ==
'BlackHoleCluster'`, `!request.url_path.startsWith('/health')`, `has(request.headers['x'])`)
and metric tag values (`request.host`, `string(destination.port)`, `request.headers['x']`,
`'literal'`, `upstream_peer.labels['app'].value`). An expression is parsed into a Python closure over an attribute lookup, so a
request costs the closure's calls and nothing else. Anything outside this subset (an unknown
attribute, an operator or function not listed here) is refused when the configuration is
loaded, with an error naming the expression, instead of being misread at request time.

Semantics follow CEL where Envoy evaluates it: a missing attribute makes the expression an
error, which Envoy's access-log filter treats as "do not log" and Istio's stats filter as the
value "unknown" (here: None out of `evaluate`).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from pymesh.api.regex import RegexError, compile_regex

# Envoy's attribute names (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes)
ATTRIBUTES = frozenset({
    "request.path", "request.url_path", "request.host", "request.scheme", "request.method",
    "request.useragent", "request.id", "request.protocol", "request.size", "request.total_size",
    "response.code", "response.flags", "response.size", "response.total_size",
    "response.grpc_status", "connection.mtls", "connection.requested_server_name", "source.address",
    "source.port", "destination.address", "destination.port", "upstream.address", "xds.cluster_name",
    "xds.route_name",
}) | {f"{peer}.{name}" for peer in ("upstream_peer", "downstream_peer")
      for name in ("workload", "namespace", "app", "version", "service", "revision", "cluster")}
# attribute maps read as map['key']; Istio's peer labels are protobuf values, read as ['key'].value
MAPS = frozenset({"request.headers", "upstream_peer.labels", "downstream_peer.labels"})
VALUE_MAPS = frozenset({"upstream_peer.labels", "downstream_peer.labels"})

Lookup = Callable[[str, str | None], Any]  # (attribute, map key or None) -> value or None
Compiled = Callable[[Lookup], Any]


class CelError(ValueError):
    """The expression is not in the supported subset (the message says why)."""


_TOKEN = re.compile(r"""\s*(?:(?P<num>[0-9]+)|(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|"""
                    r"""(?P<op>\|\||&&|==|!=|<=|>=|[<>!().,\[\]])|(?P<name>[A-Za-z_][A-Za-z0-9_]*))""")
_COMPARE = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
_METHODS = {"contains": lambda s, x: x in s, "startsWith": str.startswith, "endsWith": str.endswith}
MAX_LENGTH = 4096  # characters of one expression
MAX_DEPTH = 32  # nested parentheses and brackets, or negations in a row: the parser recurses on them
MAX_SHOWN = 120  # characters of an expression quoted in an error
INT64 = (-2**63, 2**63 - 1)  # CEL's int
_DECIMAL = re.compile(r"[+-]?[0-9]{1,19}")  # what CEL's int(string) parses (Go's strconv.ParseInt, base 10)
# CEL's escapes in string literals (cel-spec: syntax.md, "String and Bytes Values")
_ESCAPE = re.compile(r"""\\(?:(?P<char>[abfnrtv\\?"'`])|x(?P<x>[0-9a-fA-F]{2})|u(?P<u>[0-9a-fA-F]{4})|"""
                     r"""U(?P<U>[0-9a-fA-F]{8})|(?P<octal>[0-3][0-7]{2})|(?P<bad>.?))""", re.DOTALL)
_CHARS = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_MISSING = object()  # an attribute that is absent: the expression is an error


def compile_filter(expression: str) -> Compiled:
    """A boolean expression: the closure returns True to log (an error or a non-bool: False)."""
    expr = _Parser(expression).parse()

    def run(lookup: Lookup) -> bool:
        try:
            return expr(lookup) is True
        except (TypeError, _Absent):
            return False

    return run


def compile_value(expression: str) -> Compiled:
    """A value expression: the closure returns a string, or None when it cannot be evaluated."""
    expr = _Parser(expression).parse()

    def run(lookup: Lookup) -> str | None:
        try:
            value = expr(lookup)
        except (TypeError, _Absent):
            return None
        return _string(value)

    return run


def check(expression: str) -> str | None:
    """The problem with an expression, or None when pymesh can evaluate it (for validation)."""
    try:
        _Parser(expression).parse()
    except CelError as error:
        return f"expression {_shown(expression)}: {error}"
    return None


def _cut(token: str) -> str:
    """A token quoted in an error: names and literals may be thousands of characters long."""
    return token if len(token) <= 40 else token[:40] + "..."


def _shown(expression: str) -> str:
    if len(expression) <= MAX_SHOWN:
        return repr(expression)
    return f"{expression[:MAX_SHOWN]!r}... ({len(expression) - MAX_SHOWN} more characters)"


def attributes_used(expression: str) -> frozenset[tuple[str, str | None]]:
    """The (attribute, key) pairs an expression reads, so the caller fetches only those."""
    parser = _Parser(expression)
    parser.parse()
    return frozenset(parser.used)


class _Absent(Exception):
    pass


def _string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = self._tokens(text)
        self.at = 0
        self.used: set[tuple[str, str | None]] = set()

    @staticmethod
    def _tokens(text: str) -> list[tuple[str, str]]:
        if len(text) > MAX_LENGTH:
            raise CelError(f"longer than {MAX_LENGTH} characters")
        tokens, pos, depth, negations = [], 0, 0, 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            found = _TOKEN.match(text, pos)
            if found is None:
                raise CelError(f"unexpected {text[pos:].strip()[:10]!r}")
            kind = found.lastgroup
            token = found.group(kind)
            depth += 1 if token in ("(", "[") else -1 if token in (")", "]") else 0
            negations = negations + 1 if token == "!" else 0
            if depth > MAX_DEPTH or negations > MAX_DEPTH:
                raise CelError(f"nested more than {MAX_DEPTH} deep")
            tokens.append((kind, token))
            pos = found.end()
        return tokens

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise CelError("the expression ends too soon" + (f" (expected {expected!r})" if expected else ""))
        token = self.tokens[self.at]
        if expected is not None and token[1] != expected:
            raise CelError(f"expected {expected!r}, found {_cut(token[1])!r}")
        self.at += 1
        return token

    def parse(self) -> Compiled:
        if not self.tokens:
            raise CelError("the expression is empty")
        expr = self.logical("||", self.conjunction)
        if self.at < len(self.tokens):
            raise CelError(f"unexpected {_cut(self.peek())!r}")
        return expr

    def conjunction(self) -> Compiled:
        return self.logical("&&", self.unary)

    def logical(self, op: str, operand: Callable[[], Compiled]) -> Compiled:
        parts = [operand()]
        while self.peek() == op:
            self.take()
            parts.append(operand())
        if len(parts) == 1:
            return parts[0]
        if op == "||":
            return lambda lookup: _any(parts, lookup)
        return lambda lookup: _all(parts, lookup)

    def unary(self) -> Compiled:
        if self.peek() == "!":
            self.take()
            inner = self.unary()
            return lambda lookup: not _bool(inner(lookup))
        return self.comparison()

    def comparison(self) -> Compiled:
        left = self.term()
        op = self.peek()
        if op not in _COMPARE:
            return left
        self.take()
        right, compare = self.term(), _COMPARE[op]
        return lambda lookup: compare(left(lookup), right(lookup))

    def term(self) -> Compiled:
        value = self.primary()
        while self.peek() == ".":
            self.take()
            _, method = self.take()
            if method == "matches":
                value = self._matches(value)
                continue
            if method not in _METHODS:
                raise CelError(f"method {_cut(method)}() is not supported (use {', '.join(_METHODS)}, matches)")
            self.take("(")
            argument = self.logical("||", self.conjunction)
            self.take(")")
            value = _call(_METHODS[method], value, argument)
        return value

    def _matches(self, target: Compiled) -> Compiled:
        """matches('RE2 pattern'): a literal, compiled here with pymesh's bounded RE2 (a search,
        as CEL's matches)."""
        self.take("(")
        kind, token = self.take()
        if kind != "str":
            raise CelError("matches() takes a quoted pattern")
        self.take(")")
        try:
            program = compile_regex(_unquote(token))
        except RegexError as error:
            raise CelError(f"matches(): {error}") from None
        search = program.search

        def run(lookup: Lookup) -> bool:
            value = target(lookup)
            if not isinstance(value, str):
                raise TypeError("matches() takes a string")
            return search(_utf8(value)) is not None

        return run

    def primary(self) -> Compiled:
        kind, token = self.take()
        if kind == "num":
            number = int(token)
            if number > INT64[1]:
                raise CelError(f"{token[:30]} is beyond CEL's 64-bit int")
            return lambda lookup: number
        if kind == "str":
            literal = _unquote(token)
            return lambda lookup: literal
        if token == "(":
            inner = self.logical("||", self.conjunction)
            self.take(")")
            return inner
        if kind != "name":
            raise CelError(f"unexpected {_cut(token)!r}")
        if token in ("true", "false"):
            flag = token == "true"
            return lambda lookup: flag
        if self.peek() == "(":
            return self.function(token)
        return self.attribute(token)

    def function(self, name: str) -> Compiled:
        self.take("(")
        if name == "has":
            attribute, key = self.path(self.take()[1])
            self.take(")")
            return lambda lookup: lookup(attribute, key) is not None
        if name not in ("string", "int", "size"):
            raise CelError(f"function {_cut(name)}() is not supported (use has, string, int, size)")
        argument = self.logical("||", self.conjunction)
        self.take(")")
        convert = {"string": _string, "int": _int, "size": len}[name]
        return lambda lookup: convert(_present(argument(lookup)))

    def attribute(self, first: str) -> Compiled:
        attribute, key = self.path(first)
        return lambda lookup: _present(lookup(attribute, key))

    def path(self, first: str) -> tuple[str, str | None]:
        names = [first]
        while self.peek() == "." and self.at + 1 < len(self.tokens) and self.tokens[self.at + 1][0] == "name" \
                and ".".join(names) not in ATTRIBUTES:
            self.take()
            names.append(self.take()[1])
        attribute = ".".join(names)
        if attribute in MAPS:
            self.take("[")
            kind, token = self.take()
            if kind != "str":
                raise CelError(f"{_cut(attribute)}[...] needs a quoted key")
            self.take("]")
            if attribute in VALUE_MAPS and self.peek() == "." and self.at + 1 < len(self.tokens) \
                    and self.tokens[self.at + 1][1] == "value":
                self.take()
                self.take()
            key = _unquote(token) if attribute in VALUE_MAPS else _unquote(token).lower()
            self.used.add((attribute, key))
            return attribute, key
        if attribute not in ATTRIBUTES:
            raise CelError(f"attribute {_cut(attribute)} is not supported")
        self.used.add((attribute, None))
        return attribute, None


def _unquote(token: str) -> str:
    """A quoted literal's text, its escapes read as CEL reads them; CelError for one CEL has not."""
    return _ESCAPE.sub(_escaped, token[1:-1])


def _escaped(found: re.Match) -> str:
    if found["char"] is not None:
        return _CHARS.get(found["char"], found["char"])
    if found["octal"] is not None:
        return chr(int(found["octal"], 8))
    digits = found["x"] or found["u"] or found["U"]
    if digits is None:
        raise CelError(f"\\{found['bad']} is not an escape CEL has")
    code = int(digits, 16)
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise CelError(f"{found[0]} is not a Unicode code point CEL accepts")
    return chr(code)


def _utf8(text: str) -> bytes:
    """The bytes a pattern is matched against: undecodable bytes kept as they came in, and a
    lone surrogate (it cannot be encoded: it raised) as its three bytes."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _int(value: Any) -> int:
    """CEL's int(): of an int or a decimal string, within 64 bits; anything else is an error
    (a TypeError here), never Python's own reading (int(" 7 "), int("1_0"), int("²") raising)."""
    if isinstance(value, str) and _DECIMAL.fullmatch(value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not INT64[0] <= value <= INT64[1]:
        raise TypeError("int() takes an int or a decimal string within 64 bits")
    return value


def _present(value: Any) -> Any:
    if value is None:
        raise _Absent()
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("not a boolean")
    return value


def _any(parts: list[Compiled], lookup: Lookup) -> bool:
    """CEL's ||: true if any side is true, even when another is an error."""
    failed = False
    for part in parts:
        try:
            if _bool(part(lookup)):
                return True
        except (TypeError, _Absent):
            failed = True
    if failed:
        raise _Absent()
    return False


def _all(parts: list[Compiled], lookup: Lookup) -> bool:
    """CEL's &&: false if any side is false, even when another is an error."""
    failed = False
    for part in parts:
        try:
            if not _bool(part(lookup)):
                return False
        except (TypeError, _Absent):
            failed = True
    if failed:
        raise _Absent()
    return True


def _call(method: Callable, target: Compiled, argument: Compiled) -> Compiled:
    def run(lookup: Lookup) -> Any:
        value, arg = target(lookup), argument(lookup)
        if not isinstance(value, str) or not isinstance(arg, str):
            raise TypeError("string methods take strings")
        return method(value, arg)

    return run
