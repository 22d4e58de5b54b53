"""Kubernetes, the I/O part of the control server: the API server's client, informers (list then
watch, resuming and relisting), discovery and custom resources as sources of the mesh, the
injection and validation webhooks, and TokenReview. The pure translations are in pymesh.kube.

- options: the `--kubernetes` options; cluster_config: a cluster's config kinds, read once for analyze
- client: the API server's client (raw JSON for any resource type, over kubernetes_asyncio)
- informer: list then watch one resource type into a cache (resuming, relisting on 410)
- discovery_source / config_source: discovery and the custom resources as sources of the mesh
- status_writer: status subresources and Events, queued per object and rate-limited
- token_review: TokenReviews of proxies' ServiceAccount tokens, cached and bounded
- root_cert: the pymesh-ca-root-cert ConfigMap published in every namespace
- webhooks: the webhooks as the control server runs them; webhook: their HTTPS listener;
  webhook_cert: its serving certificate; settings_file: the injection settings, reloaded;
  ca_bundle: our webhook configurations' caBundle kept current

The interface between the informers and their consumers (discovery, custom resources):

    class ObjectCache(Protocol):
        resource: ResourceType        # what it holds
        synced: asyncio.Event         # set once the first full list is in
        def objects(self) -> list[dict]: ...   # the current objects, as the API server's JSON

An informer calls its `on_change()` callback (no arguments) after every change it applies to its
cache; consumers rebuild from `objects()` of the caches they own, debounced by the control
server's watcher like file changes.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from pymesh.kube.resources import ResourceType


class ObjectCache(Protocol):
    """What a consumer reads of an informer (pymesh.control.kube.informer.Informer is one)."""

    resource: ResourceType
    synced: asyncio.Event

    def objects(self) -> list[dict]: ...
