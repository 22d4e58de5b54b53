"""The access-log providers a Telemetry (or the mesh config's accessLogFile) turns on: each
writes its format to its path, for the requests its filter lets through.

Compiled per snapshot (`ProviderLogs.configure`): formats and filters are closures, files stay
open across snapshots that keep them. Writing reuses pymesh.telemetry.accesslog.AccessLog's
buffered, whole-line writes. A proxy without such providers never reaches this module.
"""

from __future__ import annotations

import logging
import time

from pymesh.proxy.attributes import lookup_for, tcp_lookup_for
from pymesh.telemetry import access_format, cel
from pymesh.telemetry.access_format import Record
from pymesh.telemetry.accesslog import AccessLog
from pymesh.telemetry.policy import AccessLogPolicy, AccessLogProvider

log = logging.getLogger("pymesh.telemetry")

# Envoy's %RESPONSE_CODE_DETAILS% for the first response flag of a local reply
_DETAILS = {
    "UH": "no_healthy_upstream", "UT": "response_timeout", "UO": "upstream_reset_before_response_started{overflow}",
    "UF": "upstream_reset_before_response_started{connection_failure}",
    "UC": "upstream_reset_before_response_started{connection_termination}", "UR": "upstream_reset_after_response_started",
    "NR": "route_not_found", "FI": "fault_filter_abort", "RL": "local_rate_limited", "DPE": "http1.codec_error",
    "UPE": "upstream_reset_before_response_started{protocol_error}", "SI": "stream_idle_timeout",
}


def response_code_details(exchange) -> str | None:
    """via_upstream when the upstream answered, else what made the local reply (as Envoy's)."""
    first = exchange.flags.split(",", 1)[0] if exchange.flags else "-"
    if first in _DETAILS:
        return _DETAILS[first]
    if exchange.last_endpoint is not None:
        return "via_upstream"
    return "direct_response" if exchange.status else None


class FormattedLog(AccessLog):
    """An AccessLog whose lines are a provider's format applied to a Record."""

    def __init__(self, provider: AccessLogProvider):
        super().__init__("json", provider.path)
        self._render = access_format.json_formatter(provider.labels) if provider.labels \
            else access_format.text_formatter(provider.text_format)

    def add(self, record: Record) -> None:
        self._pending.append(record)
        if len(self._pending) >= self.max_lines:
            self.flush()

    def text(self, records) -> str:
        return "".join(map(self.format, records))

    def format(self, record: Record) -> str:  # type: ignore[override]
        line = self._render(record)
        return line if line.isascii() else line.encode("ascii", "backslashreplace").decode("ascii")


class _Direction:
    """One direction's providers, their common filter and the headers their formats read."""

    def __init__(self, policy: AccessLogPolicy, writers: dict):
        self.writers = [writers[_key(p)] for p in policy.providers if _key(p) in writers]
        self.filter = cel.compile_filter(policy.filter) if policy.filter else None
        self.headers = tuple(sorted({h for p in policy.providers for h in _headers(p)}))


def _key(provider: AccessLogProvider) -> tuple:
    return provider.path, provider.text_format, provider.labels


def _headers(provider: AccessLogProvider) -> frozenset[str]:
    if provider.labels:
        return frozenset(h for _, v in provider.labels for h in access_format.headers_used(v))
    return access_format.headers_used(provider.text_format or access_format.ISTIO_TEXT_FORMAT)


class ProviderLogs:
    def __init__(self) -> None:
        self._writers: dict[tuple, FormattedLog] = {}
        self._directions: dict[str, _Direction] = {}
        self.identity = None  # the proxy's (ProxyIdentity): filters may read its peer metadata

    def __bool__(self) -> bool:
        return bool(self._directions)

    def configure(self, outbound: AccessLogPolicy, inbound: AccessLogPolicy | None, identity) -> None:
        self.identity = identity
        inbound = outbound if inbound is None else inbound
        wanted = {_key(p): p for policy in (outbound, inbound) if not policy.disabled for p in policy.providers}
        for key in [k for k in self._writers if k not in wanted]:
            self._writers.pop(key).close()
        for key, provider in wanted.items():
            if key not in self._writers:
                try:
                    self._writers[key] = FormattedLog(provider)
                except OSError as error:  # a path that cannot be opened: say so, keep serving
                    log.warning("access log provider %s: cannot open %s: %s", provider.name, provider.path, error)
        self._directions = {}
        for direction, policy in (("outbound", outbound), ("inbound", inbound)):
            if not policy.disabled and policy.providers:
                self._directions[direction] = _Direction(policy, self._writers)

    def request(self, exchange, duration_ms: float) -> None:
        direction = self._directions.get(exchange.listener.direction)
        if direction is None:
            return
        if direction.filter is not None and not direction.filter(lookup_for(exchange, self.identity)):
            return
        head = exchange.head
        connection = head.connection
        endpoint = exchange.last_endpoint
        state = exchange.cluster_state
        record = Record(
            start_time=time.time() - duration_ms / 1000.0, method=head.method,
            path=exchange.logged_path or head.path, authority=head.authority,
            protocol="HTTP/" + head.http_version, response_code=exchange.status, response_flags=exchange.flags,
            bytes_received=exchange.request_bytes, bytes_sent=exchange.response_bytes, duration_ms=duration_ms,
            upstream_host=endpoint.key if endpoint else None,
            upstream_cluster=state.cluster.name if state is not None else None,
            downstream_remote_address=f"{connection.source_ip}:{connection.source_port}",
            downstream_local_address=f"{connection.local_ip}:{connection.local_port}" if connection.local_ip else None,
            requested_server_name=connection.sni, route_name=exchange.route.name if exchange.route else None,
            attempt_count=exchange.attempt_id, request_id=exchange.request_id,
            response_code_details=response_code_details(exchange),
            peer_uri_san=connection.peer_identity if connection.tls else None,
            local_uri_san=connection.local_identity if connection.tls else None,
            tls_version=connection.tls_version if connection.tls else None,
            headers={h: v.decode("latin-1") for h in direction.headers if (v := head.header(h.encode())) is not None},
        )
        for writer in direction.writers:
            writer.add(record)

    def protocol_error(self, direction_name: str, info, status: int, flag: str) -> None:
        """A request too malformed to become an exchange (400, 408, 431...): its status and flag."""
        direction = self._directions.get(direction_name)
        if direction is None:
            return
        if direction.filter is not None and not direction.filter(
                lambda attribute, key: status if (attribute, key) == ("response.code", None) else None):
            return
        record = Record(start_time=time.time(), response_code=status, response_flags=flag,
                        response_code_details=_DETAILS.get(flag),
                        downstream_remote_address=f"{info.source_ip}:{info.source_port}")
        for writer in direction.writers:
            writer.add(record)

    def tcp(self, proxy, duration_ms: float) -> None:
        """A TCP connection at close, with the HTTP fields unset (as Envoy logs one)."""
        direction = self._directions.get(proxy.listener.direction)
        if direction is None:
            return
        if direction.filter is not None and not direction.filter(tcp_lookup_for(proxy)):
            return
        info = proxy.info
        upstream = proxy.endpoint.key if proxy.endpoint else (f"{proxy.target[0]}:{proxy.target[1]}" if proxy.target else None)
        record = Record(
            start_time=time.time() - duration_ms / 1000.0, response_flags=proxy.flags, bytes_received=proxy.sent,
            bytes_sent=proxy.received, duration_ms=duration_ms, upstream_host=upstream,
            upstream_cluster=proxy.cluster_state.cluster.name if proxy.cluster_state else None,
            downstream_remote_address=f"{info.source_ip}:{info.source_port}",
            downstream_local_address=f"{info.local_ip}:{info.local_port}" if info.local_ip else None,
            requested_server_name=info.sni,
            peer_uri_san=info.peer_identity if info.tls else None,
            local_uri_san=info.local_identity if info.tls else None,
            tls_version=info.tls_version if info.tls else None,
        )
        for writer in direction.writers:
            writer.add(record)

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
        self._directions = {}
