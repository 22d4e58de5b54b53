"""pymesh.telemetry: what the proxy reports, defined once and cheap on the request path.

- metrics: Istio's standard metrics (names, labels, buckets), label derivation, per-request
  recorders (`RequestMetrics`, `TcpMetrics`) and the per-process `MetricsContext`
- store: plain-list metric values per worker and their merged view across workers
- stats: Envoy-style proxy counters for the admin `/stats` page
- accesslog: Istio's JSON access log, buffered and written in whole lines
"""
