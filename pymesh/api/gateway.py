"""Istio's Gateway: the servers (port, hosts, TLS) a gateway proxy opens, and the names
VirtualServices bind to with `gateways:`.

Validation follows Istio's pkg/config/validation (ValidateGateway, validateServer,
validateServerPort, validateServerBind, validateTLSOptions, validateGatewayNames), with its
messages where it has one.
"""

from __future__ import annotations

from pymesh.api import checks, common, hosts, model, shapes
from pymesh.api.reader import PORT, Reader, Sink, Slot, boolean, choice, distinct, integer, message, text

MESH = "mesh"  # the reserved gateway name: every sidecar of the mesh

# Istio's protocol.Parse, case-insensitive; MONGO, REDIS and MYSQL are proxied as TCP (Istio's
# protocol filters for them are off by default).
SERVER_PROTOCOL = choice(
    "protocol",
    ("HTTP", "HTTPS", "HTTP2", "GRPC", "GRPC-WEB", "TLS", "TCP", "MONGO", "REDIS", "MYSQL"),
    not_yet=("UDP", "HTTP_PROXY", "THRIFT"),
    fold_case=True,
)
TLS_MODE = choice("mode", ("PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"))
TLS_PROTOCOL = choice("TLS protocol version", ("TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"))
_VERSION_ORDER = ("TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3")
HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "GRPC-WEB"})
TLS_PORT_PROTOCOLS = frozenset({"HTTPS", "TLS"})
PASSTHROUGH_MODES = frozenset({"PASSTHROUGH", "AUTO_PASSTHROUGH"})
# Envoy's cipher names the proto lists (BoringSSL's): anything else Envoy rejects.
CIPHER_SUITES = frozenset({
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA", "AES256-SHA", "DES-CBC3-SHA",
})


def gateway(metadata: model.Metadata, r: Reader) -> model.Gateway:
    if metadata.name and checks.dns_label(metadata.name):
        r.sink.add(metadata.source.line, "metadata.name", f"invalid gateway name: {metadata.name!r} (a DNS label: no dots)")
    # "port names in servers must be unique"
    servers = r.get_list("servers", distinct(message(shapes.GATEWAY_SERVER, server), lambda s: s.port.name or None,
                                             "port name"))
    if not r.has("servers") or not r.data["servers"]:
        r.error("servers", "gateway must have at least one server")
    return model.Gateway(metadata=metadata, servers=servers, selector=common.labels(r, "selector"))


def server(r: Reader) -> model.GatewayServer:
    bind = r.get("bind", text(_bind), "")
    port = r.get("port", message(shapes.GATEWAY_PORT, lambda p: _port(p, unix=bind.startswith(checks.UNIX_PREFIX))),
                 required=True)
    tls = r.get("tls", message(shapes.SERVER_TLS_SETTINGS, server_tls))
    if port is not None:
        if port.protocol in TLS_PORT_PROTOCOLS and tls is None:
            r.error("port", "server must have TLS settings for HTTPS/TLS protocols")
        elif port.protocol not in TLS_PORT_PROTOCOLS and tls is not None:
            if port.protocol not in HTTP_PROTOCOLS:
                r.error("tls", "server cannot have TLS settings for non HTTPS/TLS ports")
            elif tls.mode not in PASSTHROUGH_MODES or tls.ca_certificates or tls.private_key or tls.server_certificate:
                r.error("tls", "server cannot have TLS settings for plain text HTTP ports")
    return model.GatewayServer(
        port=port or model.ServicePort(0, "HTTP"),
        hosts=r.get_list("hosts", text(server_host), required=True),
        bind=bind,
        name=r.get("name", text(), ""),
        default_endpoint=r.get("defaultEndpoint", text(), ""),  # Istio: not implemented, not validated
        tls=tls,
    )


def _port(r: Reader, *, unix: bool) -> model.ServicePort:
    if r.has("targetPort"):
        r.error("targetPort", "targetPort has no impact on Gateways")
    number = r.get("number", integer(0, 65535) if unix else PORT, 0, required=True)
    if unix and number:
        r.error("number", "port number must be 0 for unix domain socket")
    if not r.has("name"):
        r.error("name", "port name must be set")
    return model.ServicePort(
        number=number,
        protocol=r.get("protocol", SERVER_PROTOCOL, "TCP", required=True),
        name=r.get("name", text(checks.not_empty), ""),
    )


def _bind(value: str) -> str | None:
    if value.startswith(checks.UNIX_PREFIX):
        return checks.unix_path(value[len(checks.UNIX_PREFIX):])
    return checks.ip_address(value)


def server_host(value: str) -> str | None:
    """Istio's validateNamespaceSlashWildcardHostname for gateways: "[namespace/]dnsName" where
    the namespace is "*", "." or a name and dnsName is "*", a (wildcard) FQDN or an IP."""
    namespace, slash, name = value.partition("/")
    if not slash:
        return _server_dns_name(value)
    if not namespace or not name:
        return "config namespace and dnsName in host entry cannot be empty"
    if namespace not in ("*", ".") and not hosts.dns1123_label(namespace):
        return f"invalid namespace value {namespace!r} in gateway"
    return _server_dns_name(name)


def _server_dns_name(name: str) -> str | None:
    if checks.ip_address(name) is None:
        return None
    if name != "*" and "." not in name:
        return f"short names (non FQDN) are not allowed: {name!r}"
    return hosts.wildcard_domain(name.lower()) or hosts.partial_wildcard(name)


def server_tls(r: Reader) -> model.ServerTLSSettings:
    """validateTLSOptions: what each mode needs and may not have."""
    settings = model.ServerTLSSettings(
        https_redirect=r.get("httpsRedirect", boolean, False),
        mode=r.get("mode", TLS_MODE, "PASSTHROUGH"),
        server_certificate=r.get("serverCertificate", text(), ""),
        private_key=r.get("privateKey", text(), ""),
        ca_certificates=r.get("caCertificates", text(), ""),
        ca_crl=r.get("caCrl", text(), ""),
        credential_name=r.get("credentialName", text(checks.not_empty), ""),
        credential_names=r.get_list("credentialNames", text(checks.not_empty)),
        subject_alt_names=r.get_list("subjectAltNames", text(checks.not_empty)),
        verify_certificate_spki=r.get_list("verifyCertificateSpki", text(checks.not_empty)),
        verify_certificate_hash=r.get_list("verifyCertificateHash", text(checks.not_empty)),
        min_protocol_version=r.get("minProtocolVersion", TLS_PROTOCOL, "TLS_AUTO"),
        max_protocol_version=r.get("maxProtocolVersion", TLS_PROTOCOL, "TLS_AUTO"),
        # Istio only warns about names Envoy does not know, and drops them (pymesh.routing.gateway)
        cipher_suites=r.get_list("cipherSuites", text(checks.not_empty)),
    )
    _check_tls(r, settings)
    return settings


def _check_tls(r: Reader, tls: model.ServerTLSSettings) -> None:
    mode = tls.mode
    if len(tls.credential_names) > 2:
        r.error("credentialNames", "at most two credentialNames (an RSA and an ECDSA certificate) may be given")
    if tls.credential_name and tls.credential_names:
        r.error("credentialNames", "only one of credentialName or credentialNames may be set")
    if mode == "ISTIO_MUTUAL":
        for key, value, what in (("serverCertificate", tls.server_certificate, "server certificate"),
                                 ("privateKey", tls.private_key, "private key"),
                                 ("caCertificates", tls.ca_certificates, "CA bundle"),
                                 ("credentialName", tls.credential_name or tls.credential_names, "credentialName")):
            if value:
                r.error(key, f"ISTIO_MUTUAL TLS cannot have associated {what}")
        return
    versions = [v for v in (tls.min_protocol_version, tls.max_protocol_version) if v != "TLS_AUTO"]
    if len(versions) == 2 and _VERSION_ORDER.index(versions[0]) > _VERSION_ORDER.index(versions[1]):
        r.error("minProtocolVersion", f"minProtocolVersion {versions[0]} is above maxProtocolVersion {versions[1]}")
    if mode in PASSTHROUGH_MODES:
        return  # Istio only warns: certificates are not used there
    remote = bool(tls.credential_name or tls.credential_names)
    if tls.ca_crl and remote:
        r.error("caCrl", "CRL is not supported with credentialName. CRL has to be specified in the credential")
    if tls.ca_crl and mode == "SIMPLE":
        r.error("caCrl", "CRL is not supported with SIMPLE TLS")
    if remote:
        return  # the credential holds the certificate, key and (for MUTUAL) the CA
    label = "SIMPLE" if mode == "SIMPLE" else "MUTUAL"
    if not tls.server_certificate:
        r.error("serverCertificate", f"{label} TLS requires a server certificate")
    if not tls.private_key:
        r.error("privateKey", f"{label} TLS requires a private key")
    if mode != "SIMPLE" and not tls.ca_certificates:
        r.error("caCertificates", f"{label} TLS requires a client CA bundle")


# --- gateway names, as VirtualServices write them ---------------------------------------------


def gateway_name(sink: Sink, slot: Slot) -> str | None:
    """A `gateways` entry: "mesh", "<name>" (the VirtualService's namespace), "<namespace>/<name>",
    or the legacy "<name>.<namespace>[.svc.cluster.local]" (validateGatewayNames)."""
    value = text()(sink, slot)
    if value is None or value == MESH:
        return value
    namespace, slash, name = value.partition("/")
    if slash:
        if not namespace or not name:
            problem = "config namespace and gateway name cannot be empty"
        elif checks.dns_label(namespace):
            problem = f"invalid value for namespace: {namespace!r}"
        elif checks.dns_label(name):
            problem = f"invalid value for gateway name: {name!r}"
        else:
            problem = None
    else:
        problem = hosts.fqdn(value) or checks.dns_subdomain(value)
    if problem:
        sink.at(slot, problem)
        return None
    return value
