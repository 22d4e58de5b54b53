"""Kubernetes, the pure part: translations between Kubernetes objects (plain dicts, as the API
server's JSON decodes) and pymesh's model and containers. No I/O here: the API server's client,
the informers and the webhooks' listener live in pymesh.control.kube.

- resources: the table of resource types pymesh lists, watches or writes, and their REST paths
- workloads: where each workload kind keeps its pod template, and which workload a pod is of
- selection: which pods get a sidecar (Istio's injectRequired and the webhook's selectors)
- inject_settings: the injector's settings (a YAML file or a ConfigMap), for kube-inject and /inject
- pod_options: a pod's Istio annotations read and checked into the injector's options
- inject: a pod with the pymesh-init container and the proxy as a native sidecar
- app_probes: the app's HTTP/TCP/gRPC probes pointed at the sidecar's health port, as Istio's
- downward: the downward API's labels file the injected proxy reads its labels from
- uninject: the exact inverse of inject (kube-uninject)
- admission: AdmissionReview requests read and answered (the /inject JSON patch, /validate's verdict)
- webhook_configs: our two webhook configurations: names, validated groups, the caBundle patch
- discovery: Services, EndpointSlices, Pods, Namespaces -> ServiceEntries and WorkloadEntries
- custom_resources: Istio's, pymesh's and the Gateway API's custom resources -> the config loader
- config_status: what is written back about them (Istio's status, Gateway API statuses, Events)
- token_review: the TokenReview for a ServiceAccount token, and the identity its answer proves
- root_cert: the mesh root as the pymesh-ca-root-cert ConfigMap of every namespace
"""
