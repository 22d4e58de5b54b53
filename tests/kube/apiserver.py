"""A STAND-IN Kubernetes API server for tests (no kube-apiserver can run on this project's
machines): asyncio, real HTTP/1.1 (HTTPS with a throwaway CA by default), JSON, speaking the
real protocol for any ResourceType so the production client runs against it unchanged through a
kubeconfig. Its answers copy the shapes of recorded real responses (tests/kube/recorded/, checked
by tests/kube/test_apiserver_standin.py):

- list: `limit` and `continue` (a token that expires with compaction: 410 Expired), the list's
  resourceVersion; items without kind/apiVersion for built-in types, as the real server omits them
- watch: `?watch=1&resourceVersion=RV&allowWatchBookmarks=true&timeoutSeconds=N`, chunked,
  one JSON event per line; BOOKMARK events; from no resourceVersion (or "0") the current objects
  as ADDED first; a resourceVersion older than the compacted history: an ERROR event with a 410
  Status (as the watch cache answers), or HTTP 410 with `gone_as = "status"`
- create/get/update/patch (merge, strategic merge treated as merge, JSON patch)/delete, with the
  status subresource; POST tokenreviews answered by a callback; Events are plain creates
- knobs for tests: drop_watches() mid-stream, compact(), pause_watches()/resume_watches() (new
  watch requests wait: changes made meanwhile must arrive on reconnect), delay, fail_next(),
  send_raw() (a broken or hostile line on the open watches),
  a required bearer token, serve()/unserve() a resource type (a CRD installed or not)

It runs on its own thread and event loop; every public method is safe to call from a test thread.
Not a conformance implementation: one revision counter like etcd's, no label/field selectors,
and a list's later pages read the current state (the real server serves the first page's
snapshot), which is enough for an informer followed by its watch.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import json
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import jsonpatch

from pymesh.kube import resources
from pymesh.kube.resources import ResourceType
from throwaway_ca import ThrowawayCA

BUILT_IN = tuple(v for v in vars(resources).values() if isinstance(v, ResourceType))
FIRST_REVISION = 1000
BOOKMARK_INTERVAL = 1.0  # seconds between bookmarks on a quiet watch (the real server: about a minute)
CALL_TIMEOUT = 10.0
MAX_BODY = 3 * 1024 * 1024  # the real server's request size limit


def status_body(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    """A metav1.Status as the real server writes it (field order included)."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason}
    if details is not None:
        body["details"] = details
    body["code"] = code
    return body


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.body = status_body(code, reason, message, details)
        self.code = code


class PageNotFound(Exception):
    """A path outside every served group/version: the real server's mux answers in plain text."""


def details(resource: ResourceType, name: str) -> dict:
    """A Status's details: the group only outside the core group (omitempty)."""
    return {"name": name, **({"group": resource.group} if resource.group else {}), "kind": resource.plural}


def qualified(resource: ResourceType) -> str:
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


def not_found(resource: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(resource)} "{name}" not found', details(resource, name))


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass
class Watch:
    resource: ResourceType
    namespace: str | None
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    writer: asyncio.StreamWriter | None = None


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


class StandInAPIServer:
    """Start with `with StandInAPIServer(tmp_path) as api:`; `api.kubeconfig` is a kubeconfig file
    for it (https://localhost:PORT, the throwaway CA, the bearer token if one is required)."""

    def __init__(self, directory: Path, tls: bool = True, token: str | None = "stand-in-token",
                 token_review: Callable[[dict], dict] | None = None) -> None:
        self.directory = Path(directory)
        self.tls, self.token = tls, token
        self.token_review = token_review or (lambda spec: {"authenticated": False, "error": "no reviewer set"})
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        self.custom: set[ResourceType] = set()
        self.store: dict[ResourceType, dict[tuple[str, str], dict]] = {}
        self.history: list[tuple[int, ResourceType, str, dict]] = []
        self.revision = FIRST_REVISION
        self.compacted = 0  # watches and continue tokens older than this get 410
        self.gone_as = "event"  # or "status": HTTP 410 to a watch of a compacted resourceVersion
        self.delay = 0.0  # seconds before every answer
        self.bookmark_interval = BOOKMARK_INTERVAL
        self.requests: list[tuple[str, str]] = []  # (method, path?query) of every request, in order
        self.watch_requests = 0
        self._watches: list[Watch] = []
        self._connections: set[asyncio.StreamWriter] = set()
        self._failures: list[tuple[int, str]] = []
        self._watch_gate: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stand-in apiserver", daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self.port = 0
        for resource in BUILT_IN:
            self._register(resource)

    # lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> "StandInAPIServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        context = None
        ca_path = None
        if self.tls:
            ca = ThrowawayCA(self.directory / "apiserver-ca")
            cert = ca.issue("apiserver", "localhost", "kubernetes.default.svc")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert.cert, cert.key)
            ca_path = ca.ca_path
        self._thread.start()
        self._server = self._call(lambda: asyncio.start_server(self._connection, "127.0.0.1", 0, ssl=context))
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self.tls else 'http'}://{'localhost' if self.tls else '127.0.0.1'}:{self.port}"
        self.ca_path = ca_path
        self.kubeconfig = self.write_kubeconfig(self.directory / "kubeconfig")

    def stop(self) -> None:
        async def shutdown():
            self._server.close()
            for writer in list(self._connections):
                writer.transport.abort()
            for watch in self._watches:
                watch.queue.put_nowait(("CLOSE", None))
            self._open_gate()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            await asyncio.wait(others, timeout=CALL_TIMEOUT / 2) if others else None
            await self._server.wait_closed()
        if self._server is not None:
            self._call(shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT)
        self._loop.close()

    def write_kubeconfig(self, path: Path, token: str | None = None) -> Path:
        """A kubeconfig for this server (as `kind get kubeconfig` writes one, token auth)."""
        cluster = {"server": self.url}
        if self.ca_path is not None:
            cluster["certificate-authority"] = str(self.ca_path)
        user = {"token": token or self.token} if (token or self.token) else {}
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "stand-in",
                  "clusters": [{"name": "stand-in", "cluster": cluster}],
                  "users": [{"name": "stand-in", "user": user}],
                  "contexts": [{"name": "stand-in", "context": {"cluster": "stand-in", "user": "stand-in"}}]}
        path.write_text(json.dumps(config, indent=1))  # JSON is YAML
        path.chmod(0o600)
        return path

    def _call(self, fn, *args):
        """Run `fn(*args)` (awaited if it returns a coroutine) on the server's loop; its result."""
        async def run():
            value = fn(*args)
            return await value if asyncio.iscoroutine(value) else value
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(CALL_TIMEOUT)

    # test-facing state changes (any thread) ----------------------------------------------------

    def serve(self, resource: ResourceType) -> None:
        """Serve a resource type (a CRD installed): its items keep kind/apiVersion in lists."""
        self._call(lambda: (self._register(resource), self.custom.add(resource)))

    def unserve(self, resource: ResourceType) -> None:
        self._call(lambda: self.types.pop((resource.group, resource.version, resource.plural), None))

    def apply(self, obj: dict) -> dict:
        """Create or replace an object (its kind and apiVersion name the type), as `kubectl apply`:
        an object given without status keeps the status it has; the stored copy."""
        return self._call(self._apply_local, copy.deepcopy(obj))

    def delete(self, resource: ResourceType, name: str, namespace: str | None = None) -> dict:
        return self._call(self._delete_local, resource, namespace, name)

    def get(self, resource: ResourceType, name: str, namespace: str | None = None) -> dict | None:
        return self._call(lambda: copy.deepcopy(self.store[resource].get((namespace or "", name))))

    def objects(self, resource: ResourceType) -> list[dict]:
        return self._call(lambda: copy.deepcopy(list(self.store[resource].values())))

    def compact(self) -> int:
        """Forget the history up to now: watches and continue tokens from before now get 410."""
        def run():
            self.compacted = self.revision
            self.history.clear()
            return self.revision
        return self._call(run)

    def drop_watches(self) -> int:
        """Cut every open watch mid-stream (no terminating chunk); how many."""
        def run():
            for watch in self._watches:
                if watch.writer is not None:
                    watch.writer.transport.abort()
            return len(self._watches)
        return self._call(run)

    def open_watches(self, resource: ResourceType | None = None) -> int:
        return self._call(lambda: sum(1 for w in self._watches if resource in (None, w.resource)))

    def pause_watches(self) -> None:
        """New watch requests wait (counted in watch_requests) until resume_watches()."""
        self._call(lambda: setattr(self, "_watch_gate", asyncio.Event()))

    def resume_watches(self) -> None:
        self._call(self._open_gate)

    def _open_gate(self) -> None:
        gate, self._watch_gate = self._watch_gate, None
        if gate is not None:
            gate.set()

    def fail_next(self, code: int, reason: str = "InternalError", count: int = 1) -> None:
        """The next `count` requests get this Status error."""
        self._call(lambda: self._failures.extend([(code, reason)] * count))

    def send_raw(self, line: bytes) -> None:
        """Write `line` as it is (hostile or broken) on every open watch."""
        self._call(lambda: [w.queue.put_nowait(("RAW", line)) for w in self._watches])

    def bookmark(self) -> None:
        """A BOOKMARK now on every watch that asked for them."""
        self._call(lambda: [w.queue.put_nowait(("BOOKMARK", self.revision)) for w in self._watches])

    # the store (server loop) -------------------------------------------------------------------

    def _register(self, resource: ResourceType) -> None:
        self.types[(resource.group, resource.version, resource.plural)] = resource
        self.store.setdefault(resource, {})

    def _type_of(self, obj: dict) -> ResourceType:
        for resource in self.types.values():
            if resource.kind == obj.get("kind") and resource.api_version == obj.get("apiVersion"):
                return resource
        raise ApiError(400, "BadRequest", f"no kind {obj.get('kind')!r} is registered for version "
                                          f"{obj.get('apiVersion')!r}")

    def _apply_local(self, obj: dict) -> dict:
        resource = self._type_of(obj)
        metadata = obj.setdefault("metadata", {})
        namespace = metadata.get("namespace", "default") if resource.namespaced else ""
        key = (namespace, metadata.get("name", ""))
        held = self.store[resource].get(key)
        if held is not None:
            if "status" not in obj and "status" in held:  # as kubectl apply: the status subresource stays
                obj["status"] = copy.deepcopy(held["status"])
            return self._write(resource, key, obj, "MODIFIED")
        return self._create(resource, namespace, obj)

    def _next_revision(self) -> int:
        self.revision += 1
        return self.revision

    def _create(self, resource: ResourceType, namespace: str, obj: dict) -> dict:
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = metadata["generateName"] + uuid.uuid4().hex[:5]
        name = metadata.get("name")
        if not name:
            raise ApiError(422, "Invalid", f"{resource.kind} \"\" is invalid: metadata.name: Required value: name "
                                           "or generateName is required")
        if resource.namespaced:
            if metadata.get("namespace", namespace) != namespace:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the "
                                                  "namespace sent on the request")
            metadata["namespace"] = namespace
        if (namespace, name) in self.store[resource]:
            raise ApiError(409, "AlreadyExists", f'{qualified(resource)} "{name}" already exists', details(resource, name))
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        metadata.setdefault("generation", 1)
        return self._write(resource, (namespace, name), obj, "ADDED")

    def _write(self, resource: ResourceType, key: tuple[str, str], obj: dict, kind: str) -> dict:
        old = self.store[resource].get(key)
        if old is not None:
            for kept in ("uid", "creationTimestamp"):
                obj["metadata"][kept] = old["metadata"][kept]
            if obj.get("spec") != old.get("spec"):
                obj["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            else:
                obj["metadata"]["generation"] = old["metadata"].get("generation", 1)
        obj["metadata"]["resourceVersion"] = str(self._next_revision())
        obj = {"kind": resource.kind, "apiVersion": resource.api_version,  # the real server's field order
               **{k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}}
        self.store[resource][key] = obj
        self._publish(resource, kind, obj)
        return copy.deepcopy(obj)

    def _delete_local(self, resource: ResourceType, namespace: str | None, name: str) -> dict:
        key = (namespace or "", name) if resource.namespaced else ("", name)
        obj = self.store[resource].pop(key, None)
        if obj is None:
            raise not_found(resource, name)
        obj["metadata"]["resourceVersion"] = str(self._next_revision())
        self._publish(resource, "DELETED", obj)
        return copy.deepcopy(obj)

    def _publish(self, resource: ResourceType, kind: str, obj: dict) -> None:
        revision = int(obj["metadata"]["resourceVersion"])
        self.history.append((revision, resource, kind, copy.deepcopy(obj)))
        for watch in self._watches:
            if watch.resource == resource and watch.namespace in (None, obj["metadata"].get("namespace")):
                watch.queue.put_nowait((kind, copy.deepcopy(obj)))

    # HTTP (server loop) -----------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        try:
            while True:
                request = await self._read_request(reader)
                if request is None:
                    return
                keep = await self._answer(request, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _read_request(self, reader: asyncio.StreamReader) -> Request | None:
        line = await reader.readline()
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            header = (await reader.readline()).decode("latin-1").rstrip("\r\n")
            if not header:
                break
            name, _, value = header.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length") or 0)
        if length > MAX_BODY:
            raise ConnectionError("request body too large")
        body = await reader.readexactly(length) if length else b""
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        self.requests.append((method, target))
        return Request(method, parts.path, query, headers, body)

    @staticmethod
    def _head(status: int, extra: str = "") -> bytes:
        reasons = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
                   405: "Method Not Allowed", 409: "Conflict", 410: "Gone", 415: "Unsupported Media Type",
                   422: "Unprocessable Entity", 500: "Internal Server Error", 503: "Service Unavailable"}
        return (f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                f"Cache-Control: no-cache, private\r\n{extra}").encode()

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: dict) -> None:
        data = json.dumps(body, separators=(",", ":")).encode() + b"\n"
        writer.write(self._head(status, f"Content-Length: {len(data)}\r\n\r\n") + data)
        await writer.drain()

    async def _answer(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            if self.token and request.headers.get("authorization") != f"Bearer {self.token}":
                raise ApiError(401, "Unauthorized", "Unauthorized")
            if self._failures:
                code, reason = self._failures.pop(0)
                raise ApiError(code, reason, f"stand-in: injected failure {code}")
            resource, namespace, name, subresource = self._route(request.path)
            if request.method == "GET" and name is None and request.query.get("watch") in ("1", "true"):
                return await self._watch(request, resource, namespace, writer)
            status, body = self._handle(request, resource, namespace, name, subresource)
        except ApiError as error:
            status, body = error.code, error.body
        except PageNotFound:
            text = b"404 page not found\n"
            writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n"
                         b"X-Content-Type-Options: nosniff\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))
            await writer.drain()
            return True
        await self._send(writer, status, body)
        return True

    def _route(self, path: str) -> tuple[ResourceType, str | None, str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise PageNotFound()
        if not any(r.group == group and r.version == version for r in self.types.values()):
            raise PageNotFound()  # a CRD's group that is not installed
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            scoped = self.types.get((group, version, rest[2]))
            if scoped is not None and scoped.namespaced:
                namespace, rest = rest[1], rest[2:]
        resource = self.types.get((group, version, rest[0])) if rest else None
        if resource is None or len(rest) > 3 or (len(rest) == 3 and rest[2] != "status"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return resource, namespace, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None

    def _decode(self, request: Request):
        try:
            return json.loads(request.body)
        except ValueError as error:
            raise ApiError(400, "BadRequest", f"the body of the request was in an unknown format: {error}") from None

    def _handle(self, request: Request, resource: ResourceType, namespace: str | None, name: str | None,
                subresource: str | None) -> tuple[int, dict]:
        method = request.method
        if name is None:
            if method == "GET":
                return 200, self._list(resource, namespace, request.query)
            if method == "POST":
                obj = self._decode(request)
                if not isinstance(obj, dict):
                    raise ApiError(400, "BadRequest", "the body of the request is not an object")
                if resource == resources.TOKEN_REVIEWS:
                    return 201, {**obj, "status": self.token_review(obj.get("spec") or {})}
                if obj.get("kind") not in (None, resource.kind):
                    raise ApiError(400, "BadRequest", f"the kind {obj.get('kind')!r} does not match {resource.kind}")
                obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
                return 201, self._create(resource, namespace or "", obj)
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {resource.plural}")
        key = (namespace or "", name)
        held = self.store[resource].get(key)
        if method == "DELETE":
            return 200, self._delete_local(resource, namespace, name)
        if held is None:
            raise not_found(resource, name)
        if method == "GET":
            return 200, copy.deepcopy(held)
        if method == "PUT":
            obj = self._decode(request)
            given = (obj.get("metadata") or {}).get("resourceVersion")
            if given and given != held["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified(resource)} "{name}": the '
                                                "object has been modified; please apply your changes to the latest "
                                                "version and try again", details(resource, name))
        elif method == "PATCH":
            obj = self._patched(request, held)
        else:
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on {resource.plural}")
        return 200, self._write(resource, key, self._scoped(held, obj, subresource), "MODIFIED")

    def _patched(self, request: Request, held: dict) -> dict:
        kind = request.headers.get("content-type", "").split(";")[0].strip()
        patch = self._decode(request)
        if kind in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return merge_patch(held, patch)
        if kind == "application/json-patch+json":
            try:
                return jsonpatch.apply_patch(held, patch)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
                raise ApiError(422, "Invalid", f"the JSON patch does not apply: {error}") from None
        raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted "
                                                    f"media types include: application/json-patch+json, "
                                                    f"application/merge-patch+json, application/apply-patch+yaml")

    @staticmethod
    def _scoped(held: dict, obj: dict, subresource: str | None) -> dict:
        """A write to the status subresource changes only status; one to the object all but status."""
        result = copy.deepcopy(held)
        if subresource == "status":
            result["status"] = obj.get("status")
            return result
        result.update({k: copy.deepcopy(v) for k, v in obj.items() if k != "status"})
        result["metadata"] = {**obj.get("metadata", {}), "namespace": held["metadata"].get("namespace"),
                              "name": held["metadata"]["name"]}
        if not result["metadata"]["namespace"]:
            result["metadata"].pop("namespace")
        return result

    def _item(self, resource: ResourceType, obj: dict) -> dict:
        """A list item: built-in types' items carry no kind/apiVersion in the real server's lists."""
        item = copy.deepcopy(obj)
        if resource not in self.custom:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return item

    def _list(self, resource: ResourceType, namespace: str | None, query: dict[str, str]) -> dict:
        keys = sorted(k for k in self.store[resource] if namespace in (None, k[0]))
        revision, start = self.revision, None
        token = query.get("continue")
        if token:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                revision, start = int(decoded["rv"]), tuple(decoded["start"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "BadRequest", "continue key is not valid: incorrect encoded start resourceVersion "
                                                  "(version meta.k8s.io/v1)") from None
            if revision < self.compacted:
                raise ApiError(410, "Expired", "The provided continue parameter is too old to display a consistent "
                                               "list result. You can start a new list without the continue "
                                               "parameter, or use the continue token in this response to retrieve "
                                               "the remainder of the results. Continuing with the provided token "
                                               "results in an inconsistent list - objects that were created, "
                                               "modified, or deleted between the time the first chunk was returned "
                                               "and now may show up in the list.")
            keys = [k for k in keys if k > start]
        limit = int(query.get("limit") or 0)
        page, rest = (keys[:limit], keys[limit:]) if limit > 0 else (keys, [])
        metadata: dict = {"resourceVersion": str(revision)}
        if rest:
            metadata["continue"] = base64.urlsafe_b64encode(
                json.dumps({"v": "meta.k8s.io/v1", "rv": revision, "start": list(page[-1])}).encode()).decode()
            metadata["remainingItemCount"] = len(rest)
        return {"kind": f"{resource.kind}List", "apiVersion": resource.api_version, "metadata": metadata,
                "items": [self._item(resource, self.store[resource][k]) for k in page]}

    async def _watch(self, request: Request, resource: ResourceType, namespace: str | None,
                     writer: asyncio.StreamWriter) -> bool:
        self.watch_requests += 1
        while self._watch_gate is not None:
            await self._watch_gate.wait()
        since = request.query.get("resourceVersion", "")
        try:
            revision = int(since) if since not in ("", "0") else None
        except ValueError:
            await self._send(writer, 400, status_body(400, "BadRequest", f'strconv.ParseUint: parsing "{since}": '
                                                                          "invalid syntax"))
            return True
        watch = Watch(resource, namespace, writer=writer)
        if revision is not None and revision < self.compacted:
            gone = status_body(410, "Expired", f"too old resource version: {revision} ({self.revision})")
            if self.gone_as == "status":
                await self._send(writer, 410, gone)
                return True
            backlog = [("ERROR", gone)]
        elif revision is None:
            backlog = [("ADDED", copy.deepcopy(o)) for k, o in sorted(self.store[resource].items())
                       if namespace in (None, k[0])]
        else:
            backlog = [(kind, copy.deepcopy(obj)) for rv, res, kind, obj in self.history
                       if rv > revision and res == resource and namespace in (None, obj["metadata"].get("namespace"))]
        for item in backlog:
            watch.queue.put_nowait(item)
        self._watches.append(watch)  # no await since the backlog: nothing published in between is lost
        try:
            return await self._stream(request, resource, watch, writer)
        finally:
            self._watches.remove(watch)

    async def _stream(self, request: Request, resource: ResourceType, watch: Watch,
                      writer: asyncio.StreamWriter) -> bool:
        writer.write(self._head(200, "Transfer-Encoding: chunked\r\n\r\n"))
        await writer.drain()
        bookmarks = request.query.get("allowWatchBookmarks") in ("1", "true")
        timeout = float(request.query.get("timeoutSeconds") or 1800)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                kind, obj = await asyncio.wait_for(watch.queue.get(), min(left, self.bookmark_interval))
            except asyncio.TimeoutError:
                if not bookmarks or not watch.queue.empty():
                    continue
                kind, obj = "BOOKMARK", None
            if kind == "CLOSE":
                return False
            if kind == "RAW":
                writer.write(b"%x\r\n%s\r\n" % (len(obj), obj))
                await writer.drain()
                continue
            if kind == "BOOKMARK":  # obj: the revision all events before it in the queue reach
                if not bookmarks:
                    continue
                obj = {"kind": resource.kind, "apiVersion": resource.api_version,
                       "metadata": {"resourceVersion": str(self.revision if obj is None else obj)}}
            line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"
            writer.write(b"%x\r\n%s\r\n" % (len(line), line))
            await writer.drain()
            if kind == "ERROR":
                break
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True
