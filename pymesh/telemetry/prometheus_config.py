"""A prometheus.yml that scrapes a local mesh, with Istio's job names and relabelling (istio.io
docs/ops/integrations/prometheus, "customized scraping configurations"):

- `istiod`: the control server's /metrics on its admin port (pilot_*, pymesh_control_*);
- `envoy-stats`: every proxy's /stats/prometheus (istio_*, envoy_*), found live from the control
  server's HTTP service discovery (/prometheus/targets, refreshed every few seconds since local
  proxies come and go) and/or listed statically (`targets`, for meshes without a control server);
  the node's labels become target labels (labelmap, as Istio's `__meta_kubernetes_pod_label_(.+)`),
  with `namespace` and `pod` (the node id).

Pure: options in, a config dict (and its YAML) out; the command and the demo write it.
"""

from __future__ import annotations

import re
from typing import Sequence

import yaml

from pymesh.routing.hosts import parse_host_port

CONTROL_JOB, PROXY_JOB = "istiod", "envoy-stats"
STATS_PATH = "/stats/prometheus"
SD_PATH = "/prometheus/targets"  # the control server serves its service discovery there
DEFAULT_INTERVAL = "15s"  # Istio's addon
# Prometheus' duration syntax (common/model.ParseDuration)
_DURATION = re.compile(r"(?=\d)(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?\Z")
_RELABEL = [
    {"action": "labelmap", "regex": "__meta_pymesh_label_(.+)"},
    {"source_labels": ["__meta_pymesh_namespace"], "action": "replace", "target_label": "namespace"},
    {"source_labels": ["__meta_pymesh_node_id"], "action": "replace", "target_label": "pod"},
]


def scrape_config(control_admin: str | None = "127.0.0.1:15014", targets: Sequence[str] = (),
                  scrape_interval: str = DEFAULT_INTERVAL, sd_refresh: str = "5s") -> dict:
    """The whole prometheus.yml as a dict. `control_admin` None: no control server (then
    `targets` must list the proxies). ValueError names a bad option."""
    for name, value in (("scrape interval", scrape_interval), ("service discovery refresh", sd_refresh)):
        if not _DURATION.match(value):
            raise ValueError(f"{name} {value!r} is not a Prometheus duration like 15s, 1m or 500ms")
    statics = [_target(t, "--target") for t in targets]
    if control_admin is None and not statics:
        raise ValueError("nothing to scrape: give the control server's admin address or --target addresses")
    jobs = []
    proxies: dict = {"job_name": PROXY_JOB, "metrics_path": STATS_PATH}
    if control_admin is not None:
        admin = _target(control_admin, "control server admin address")
        jobs.append({"job_name": CONTROL_JOB, "metrics_path": "/metrics", "static_configs": [{"targets": [admin]}]})
        proxies["http_sd_configs"] = [{"url": f"http://{admin}{SD_PATH}", "refresh_interval": sd_refresh}]
    if statics:
        proxies["static_configs"] = [{"targets": statics}]
    proxies["relabel_configs"] = [dict(rule) for rule in _RELABEL]
    jobs.append(proxies)
    return {"global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": jobs}


def render(config: dict) -> str:
    return "# written by `pymesh dashboard prometheus-config`\n" + yaml.safe_dump(config, sort_keys=False)


def prometheus_command(config_path: str, storage_dir: str, listen: str = "127.0.0.1:9090",
                       binary: str = "prometheus") -> list[str]:
    """The argv of a Prometheus serving this config locally (its storage in `storage_dir`)."""
    return [binary, f"--config.file={config_path}", f"--storage.tsdb.path={storage_dir}",
            f"--web.listen-address={listen}"]


def _target(value: str, what: str) -> str:
    try:
        host, port = parse_host_port(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not host:port") from None
    if not host or host.startswith("unix://") or not 0 < port < 65536 or any(c in host for c in "/@ "):
        raise ValueError(f"{what} {value!r} is not host:port")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
