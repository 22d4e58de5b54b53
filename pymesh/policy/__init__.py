"""pymesh.policy: the pure upstream policies on the request path (no I/O, no clock, no global
random: time and randomness are injected).

- balancer: load balancers over a cluster's endpoints (`make_balancer`)
- hashkey: consistent-hash keys from a request (`hash_key`) and the stable hash
- retry: retry decisions and backoff (`RetryPolicy`)
- outcome: how an attempt ended and its response flags (`Outcome`, `classify`)
- flags: Envoy's response flags, defined once
"""
