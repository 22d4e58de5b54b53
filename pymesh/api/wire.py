"""The control protocol's messages and framing (v1), shared by the proxy and the control server.

One HTTP/2 stream (`POST /pymesh.control.v1/Stream`) carries, each way, a sequence of frames: a
4-byte big-endian length, then that many bytes of UTF-8 JSON holding one message object with
"v" (the protocol's major version) and "type". Defined once here, with no I/O, so the two sides
cannot drift apart: each side feeds received bytes to a `FrameDecoder` and sends
`encode_message(...)`.

A frame that cannot be read at all (oversize, bad JSON, unknown version or type) is a `WireError`:
the stream is unusable. A readable envelope whose content is wrong (a config field with the wrong
type, say) is returned as an `InvalidMessage` carrying the version and nonce, so a proxy can NACK
it and keep its stream.

Beside the stream, on the same listener: `GET TrustBundle` (the roots, PEM) and `POST Sign` (a
`SignRequest` JSON body, a `SignResponse` answer) by which a proxy gets and renews its
certificate (docs/control-security.md).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping, Union

from pymesh.api import codec, model

__all__ = [
    "CONTENT_TYPE",
    "MAX_ERROR",
    "MAX_FRAME",
    "PATH",
    "STALE_BASE",
    "VERSION",
    "Ack",
    "EndpointsMessage",
    "FrameDecoder",
    "HealthMessage",
    "Hello",
    "InvalidMessage",
    "Message",
    "Nack",
    "Node",
    "SnapshotMessage",
    "TrustBundleMessage",
    "WireError",
    "encode_json",
    "encode_message",
]

VERSION = 1
PATH = "/pymesh.control.v1/Stream"
CONTENT_TYPE = "application/x-pymesh-stream"
MAX_FRAME = 16 * 1024 * 1024  # bytes of JSON in one frame
MAX_ERROR = 8 * 1024  # characters of a NACK's error (a whole config's errors can be long)
SIGN_PATH = "/pymesh.control.v1/Sign"  # POST, JSON: a CSR signed for the credential's identity
BUNDLE_PATH = "/pymesh.control.v1/TrustBundle"  # GET: the roots (PEM), checked by the token's pin
# the control server's SPIFFE identity (in the mesh's trust domain), which proxies check after
# every handshake with it; no join token can be made for its namespace
CONTROL_NAMESPACE, CONTROL_SERVICE_ACCOUNT = "pymesh-system", "pymesh-control"
JSON_TYPE = "application/json"
PEM_TYPE = "application/x-pem-file"
MAX_SIGN_BODY = 32 * 1024  # bytes of a signing request or answer (a CSR is < 1 KiB; within one window)
STALE_BASE = "stale base"  # how a NACK of an endpoints message with the wrong base_version starts
_LENGTH = struct.Struct(">I")


class WireError(Exception):
    """The peer's bytes cannot be read as protocol v1 messages; the stream must be closed."""


@dataclass(frozen=True)
class Node:
    """Who a proxy is: what the server registers and scopes the proxy's view by."""

    id: str  # unique per proxy, e.g. "reviews-v2-7f3a.demo"
    workload: str = ""
    namespace: str = "default"
    service_account: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    addresses: tuple[str, ...] = ()
    ports: Mapping[str, int] = field(default_factory=dict)  # the ports its app serves, by name
    kind: str = "sidecar"  # Istio's node type: "sidecar", or "router" for `pymesh gateway`
    # a WorkloadGroup of its namespace to auto-register with (Istio's ISTIO_META_AUTO_REGISTER_GROUP)
    workload_group: str = ""
    # where Prometheus scrapes its /stats/prometheus, "IP:port" ("" none): the control server
    # lists it for service discovery (Istio finds it from the pod's 15090 port instead)
    stats_address: str = ""


@dataclass(frozen=True)
class Hello:
    """Proxy -> server, first on the stream."""

    TYPE: ClassVar[str] = "hello"
    node: Node
    last_version: str | None = None  # the version the proxy serves now (e.g. a persisted one)


@dataclass(frozen=True)
class Ack:
    """Proxy -> server: the snapshot or endpoints message with this nonce is applied."""

    TYPE: ClassVar[str] = "ack"
    version: str
    nonce: str


@dataclass(frozen=True)
class Nack:
    """Proxy -> server: the message with this nonce was rejected; the proxy keeps its config."""

    TYPE: ClassVar[str] = "nack"
    version: str
    nonce: str
    error: str  # cut to MAX_ERROR characters: the server keeps it for its status

    def __post_init__(self) -> None:
        if isinstance(self.error, str) and len(self.error) > MAX_ERROR:
            cut = len(self.error) - MAX_ERROR
            object.__setattr__(self, "error", f"{self.error[:MAX_ERROR]}... ({cut} more characters)")


@dataclass(frozen=True)
class HealthMessage:
    """Proxy -> server: its application's health by its WorkloadGroup's probe, sent when it
    changes and after each hello (Istio's agent sends HealthInformation on transitions)."""

    TYPE: ClassVar[str] = "health"
    healthy: bool
    message: str = ""  # why not, cut to MAX_ERROR characters

    def __post_init__(self) -> None:
        if isinstance(self.message, str) and len(self.message) > MAX_ERROR:
            object.__setattr__(self, "message", self.message[:MAX_ERROR] + "...")


@dataclass(frozen=True)
class SnapshotMessage:
    """Server -> proxy: the proxy's full view of the mesh."""

    TYPE: ClassVar[str] = "snapshot"
    version: str
    nonce: str
    config: model.MeshConfig


@dataclass(frozen=True)
class EndpointsMessage:
    """Server -> proxy: only the workload entries changed; they replace
    config.workload_entries of the snapshot whose version is `base_version`."""

    TYPE: ClassVar[str] = "endpoints"
    version: str
    nonce: str
    base_version: str
    workload_entries: tuple[model.WorkloadEntry, ...]


@dataclass(frozen=True)
class TrustBundleMessage:
    """Server -> proxy, on an mTLS stream only (a proxy without a certificate has no use for it,
    and v1 proxies on an --insecure server never see the type): the roots (PEM, one or more) that
    workload certificates are verified against now. Sent after hello and when the bundle changes."""

    TYPE: ClassVar[str] = "trust_bundle"
    roots_pem: str


@dataclass(frozen=True)
class SignRequest:
    """Body of POST SIGN_PATH: a CSR (PEM) whose one SPIFFE URI SAN must be the identity of the
    request's credential (the `authorization: Bearer <join token>` header, or the client
    certificate of the connection when renewing); `ttl` (seconds) is capped by the server."""

    csr: str
    ttl: float | None = None


@dataclass(frozen=True)
class SignResponse:
    certificate_chain: str  # PEM, leaf first
    trust_bundle: str  # PEM roots


@dataclass(frozen=True)
class InvalidMessage:
    """A message whose envelope was readable but whose content was not (never sent, only
    returned by FrameDecoder): `error` names the field path, ready to go into a NACK."""

    type: str
    version: str
    nonce: str
    error: str


Message = Union[Hello, Ack, Nack, HealthMessage, SnapshotMessage, EndpointsMessage, TrustBundleMessage]
MESSAGE_TYPES: dict[str, type] = {
    cls.TYPE: cls for cls in (Hello, Ack, Nack, HealthMessage, SnapshotMessage, EndpointsMessage, TrustBundleMessage)
}


def encode_message(msg: Message, encoded: Mapping[str, bytes] | None = None) -> bytes:
    """The framed bytes of one message; WireError if it would exceed MAX_FRAME.

    `encoded` holds fields already turned into JSON by `encode_json` (a server pushing one view
    to many proxies encodes it once, not once per proxy)."""
    encoded = encoded or {}
    body = {"v": VERSION, "type": msg.TYPE}
    body.update((name, codec.encode(getattr(msg, name))) for name in _fields(type(msg)) if name not in encoded)
    data = _json(body)
    if encoded:
        data = data[:-1] + b"".join(b',"%s":%s' % (name.encode(), value) for name, value in encoded.items()) + b"}"
    if len(data) > MAX_FRAME:
        raise WireError(f"{msg.TYPE} message is {len(data)} bytes, over the {MAX_FRAME}-byte frame limit")
    return _LENGTH.pack(len(data)) + data


def encode_json(value: Any) -> bytes:
    """A model value as JSON, for `encode_message(..., encoded=...)`."""
    return _json(codec.encode(value))


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


@functools.cache
def _fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


class FrameDecoder:
    """Bytes in, messages out; keeps a partial frame until the rest arrives.

    `max_frame` bounds every frame; `max_first`, if given, the first one (a server lets a client
    it does not know yet send only a small hello before anything larger)."""

    def __init__(self, max_frame: int = MAX_FRAME, max_first: int | None = None):
        self._buffer = bytearray()
        self._later = max_frame
        self._max = max_frame if max_first is None else max_first
        self.decoded = 0  # frames decoded so far

    @property
    def pending(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message | InvalidMessage]:
        """Every message completed by `data`, in order; WireError when a frame is unreadable
        (the messages before it in the same call are lost with the stream)."""
        self._buffer += data
        out: list[Message | InvalidMessage] = []
        while len(self._buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(self._buffer)
            if length > self._max:
                raise WireError(f"frame of {length} bytes is over the {self._max}-byte limit")
            end = _LENGTH.size + length
            if len(self._buffer) < end:
                break
            payload = bytes(self._buffer[_LENGTH.size : end])
            del self._buffer[:end]
            self.decoded += 1
            self._max = self._later
            out.append(decode_payload(payload))
        return out


def decode_payload(payload: bytes) -> Message | InvalidMessage:
    """One frame's JSON -> a message (see FrameDecoder for what is an error)."""
    try:
        body = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise WireError(f"frame is not UTF-8: {exc.reason} at byte {exc.start}") from None
    except ValueError as exc:
        raise WireError(f"frame is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise WireError("frame is not a JSON object")
    version = body.pop("v", None)
    if version != VERSION:
        if version is None:
            raise WireError('message has no protocol version ("v")')
        raise WireError(f"unsupported protocol version {version!r} (this side speaks {VERSION})")
    kind = body.pop("type", None)
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise WireError(f"unknown message type {kind!r}")
    try:
        return codec.decode(cls, body)
    except ValueError as exc:
        return InvalidMessage(kind, _text(body.get("version")), _text(body.get("nonce")), f"{kind}: {exc}")


def encode_body(value: SignRequest | SignResponse) -> bytes:
    """A signing request or answer as its HTTP body (JSON)."""
    return _json(codec.encode(value))


def decode_body(cls: type, body: bytes) -> Any:
    """A signing request or answer from its HTTP body; ValueError naming what is wrong."""
    if len(body) > MAX_SIGN_BODY:
        raise ValueError(f"body of {len(body)} bytes is over the {MAX_SIGN_BODY}-byte limit")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    return codec.decode(cls, data)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
