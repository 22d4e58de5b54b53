"""WorkloadGroup and ProxyConfig: what a VM's proxy registers as, and per-proxy settings.

Validated as Istio's ValidateWorkloadGroup and ValidateProxyConfig with the CRD schemas: a
group needs a template (a WorkloadEntry without address: the registering proxy's is used), its
labels must be Kubernetes labels, and its probe has exactly one of httpGet, tcpSocket and exec,
non-negative timings, real ports and header names matching the CRD's `^[-_A-Za-z0-9]+$`.
"""

from __future__ import annotations

import re

from pymesh.api import checks, common, hosts, model, shapes
from pymesh.api.reader import PORT, Reader, choice, integer, message, text
from pymesh.api.request_authentication import match_labels_selector
from pymesh.api.serviceentry import workload_entry_spec

PROBE_METHODS = ("httpGet", "tcpSocket", "exec")
SCHEME = choice("scheme", ("HTTP", "HTTPS"))
PROBE_HEADER_NAME = re.compile(r"[-_A-Za-z0-9]+\Z")
UNSAFE_IN_PATH = re.compile(r"[\x00-\x20\x7f]")  # the probe writes the path into its request line
NON_NEGATIVE = integer(0, 2**31 - 1)  # an int32 that Istio requires to be >= 0


def workload_group(metadata: model.Metadata, r: Reader) -> model.WorkloadGroup:
    group_meta = r.get("metadata", message(shapes.WORKLOAD_GROUP_METADATA, _group_metadata), ({}, {}))
    template = r.get("template", message(shapes.WORKLOAD_GROUP_TEMPLATE, _template), required=True)
    return model.WorkloadGroup(
        metadata=metadata,
        template=template or model.WorkloadEntrySpec(address=""),
        labels=group_meta[0],
        annotations=group_meta[1],
        probe=r.get("probe", message(shapes.READINESS_PROBE, _probe)),
    )


def proxy_config(metadata: model.Metadata, r: Reader) -> model.ProxyConfig:
    return model.ProxyConfig(
        metadata=metadata,
        selector=match_labels_selector(r),
        concurrency=r.get("concurrency", NON_NEGATIVE),
        environment_variables=r.get_map("environmentVariables", text()),
        image_type=r.get("image", message(shapes.PROXY_IMAGE, lambda i: i.get("imageType", text(), "")), ""),
    )


def _group_metadata(r: Reader) -> tuple[dict[str, str], dict[str, str]]:
    return common.labels(r, "labels"), r.get_map("annotations", text())


def _template(r: Reader) -> model.WorkloadEntrySpec:
    return workload_entry_spec(r, address_required=False)


def _probe(r: Reader) -> model.ReadinessProbe:
    given = [method for method in PROBE_METHODS if r.has(method)]
    if not given:
        r.error_here(f"the probe needs one of {', '.join(PROBE_METHODS)}")
    elif len(given) > 1:
        r.error(given[1], f"only one of {', '.join(PROBE_METHODS)} may be set, not {' and '.join(given)}")
    defaults = model.ReadinessProbe()
    # Istio's fields are proto3 int32s: 0 cannot be told from unset, and both take the default
    return model.ReadinessProbe(
        initial_delay_seconds=r.get("initialDelaySeconds", NON_NEGATIVE, 0),
        timeout_seconds=r.get("timeoutSeconds", NON_NEGATIVE, 0) or defaults.timeout_seconds,
        period_seconds=r.get("periodSeconds", NON_NEGATIVE, 0) or defaults.period_seconds,
        success_threshold=r.get("successThreshold", NON_NEGATIVE, 0) or defaults.success_threshold,
        failure_threshold=r.get("failureThreshold", NON_NEGATIVE, 0) or defaults.failure_threshold,
        http_get=r.get("httpGet", message(shapes.HTTP_HEALTH_CHECK, _http_get)),
        tcp_socket=r.get("tcpSocket", message(shapes.TCP_HEALTH_CHECK, _tcp_socket)),
        exec=r.get("exec", message(shapes.EXEC_HEALTH_CHECK, _exec)),
    )


def _http_get(r: Reader) -> model.HTTPHealthCheck:
    return model.HTTPHealthCheck(
        port=r.get("port", PORT, 0, required=True),
        path=r.get("path", text(_probe_path), ""),
        host=r.get("host", text(_probe_host), ""),
        scheme=r.get("scheme", SCHEME, "HTTP"),
        headers=r.get_list("httpHeaders", message(shapes.HTTP_HEADER, _header)),
    )


def _header(r: Reader) -> model.HTTPHeader:
    return model.HTTPHeader(name=r.get("name", text(_probe_header_name), "", required=True),
                            value=r.get("value", text(checks.header_value), ""))


def _probe_header_name(value: str) -> str | None:
    if PROBE_HEADER_NAME.match(value):
        return None
    return f"header name {value!r} is invalid (letters, digits, '-' and '_')"


def _probe_path(value: str) -> str | None:
    if UNSAFE_IN_PATH.search(value):
        return f"path {value!r} contains spaces or control characters"
    return None


def _probe_host(value: str) -> str | None:
    if checks.ip_address(value) is None or hosts.fqdn(value) is None:
        return None
    return f"host {value!r} is not an IP address or a DNS name"


def _tcp_socket(r: Reader) -> model.TCPHealthCheck:
    return model.TCPHealthCheck(port=r.get("port", PORT, 0, required=True), host=r.get("host", text(_probe_host), ""))


def _exec(r: Reader) -> model.ExecHealthCheck:
    return model.ExecHealthCheck(command=r.get_list("command", text(), required=True))
