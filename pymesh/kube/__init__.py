"""Kubernetes, the pure part: translations between Kubernetes objects (plain dicts, as the API
server's JSON decodes) and pymesh's model and containers. No I/O here: the API server's client,
the informers and the webhooks live in pymesh.control.kube.

- resources: the resource types pymesh reads and writes, and their REST paths
- inject / uninject: a pod template with the pymesh-init container and the native sidecar
- discovery: Services, EndpointSlices, Pods, Namespaces -> the registry's ServiceEntries and
  WorkloadEntries
- custom_resources: Istio and Gateway API custom resources -> the documents the config loader reads
"""
