"""A small Bookinfo-shaped mesh for `pymesh explain`'s tests: reviews (v1, v2 with endpoints; a
subset v9 whose labels select none), ratings with Istio's fault sample, a Gateway-only
VirtualService, and a DestinationRule per service. Used from files and behind a live proxy."""

from __future__ import annotations


def _service_entry(name: str, port: int, endpoints: dict[str, int]) -> str:
    """A STATIC HTTP ServiceEntry `name`.default.svc.cluster.local: version label -> endpoint port."""
    listed = "\n".join(f"  - {{address: 127.0.0.1, ports: {{http: {p}}}, labels: {{version: {v}}}}}"
                       for v, p in endpoints.items())
    return f"""apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: default}}
spec:
  hosts: [{name}.default.svc.cluster.local]
  location: MESH_INTERNAL
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
  resolution: STATIC
  endpoints:
{listed}
"""


def mesh_yaml(reviews_ports: dict[str, int], ratings_port: int, service_port: int = 9080, eject_on_5xx: bool = False,
              gateway_port: int = 8080) -> str:
    """reviews_ports: version -> the port its endpoint listens on (127.0.0.1); `eject_on_5xx`:
    reviews' outlier detection ejects an endpoint after one 5xx, for 30s."""
    policy = ("\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, "
              "maxEjectionPercent: 100}") if eject_on_5xx else ""
    services = _service_entry("reviews", service_port, reviews_ports) + "---\n" + \
        _service_entry("ratings", service_port, {"v1": ratings_port})
    return services + f"""---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews{policy}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
  - {{name: v9, labels: {{version: v9}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: ratings, namespace: default}}
spec:
  host: ratings
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers:
        end-user: {{exact: jason}}
    route:
    - destination: {{host: reviews, subset: v2}}
    timeout: 3s
  - name: canary
    match:
    - uri: {{prefix: /canary}}
    route:
    - destination: {{host: reviews, subset: v9}}
  - name: default
    route:
    - destination: {{host: reviews, subset: v1}}
      weight: 90
    - destination: {{host: reviews, subset: v2}}
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: ratings, namespace: default}}
spec:
  hosts: [ratings]
  http:
  - match:
    - headers:
        end-user: {{exact: jason}}
    fault:
      abort: {{percentage: {{value: 100}}, httpStatus: 500}}
    route:
    - destination: {{host: ratings, subset: v1}}
  - route:
    - destination: {{host: ratings, subset: v1}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: bookinfo-gateway, namespace: default}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gateway_port}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: bookinfo, namespace: default}}
spec:
  hosts: [bookinfo.example.com]
  gateways: [bookinfo-gateway]
  http:
  - match:
    - uri: {{exact: /productpage}}
    route:
    - destination: {{host: reviews, port: {{number: {service_port}}}}}
"""


def sidecar_yaml(port: int) -> str:
    """An egress listener on 127.0.0.1:`port` for every host (no capture)."""
    return f"""
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: default}}
spec:
  egress:
  - port: {{number: {port}, protocol: HTTP, name: http}}
    bind: 127.0.0.1
    captureMode: NONE
    hosts: ["*/*"]
"""
