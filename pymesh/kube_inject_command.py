"""`pymesh kube-inject` and `pymesh kube-uninject`: a manifest in (file or stdin, many documents),
the same manifest out with every pod template given (or relieved of) the pymesh sidecar, as
`istioctl kube-inject` does. Document order and non-pod documents are kept; comments are not.

All or nothing: every document is converted before a byte is written, so an error (named by
document number, kind and name) leaves no half-injected output behind.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Callable

import yaml

from pymesh.api import limits
from pymesh.kube.inject import inject_object
from pymesh.kube.inject_settings import InjectError, InjectSettings, load_settings
from pymesh.kube.uninject import uninject_object

MAX_INPUT_BYTES = limits.DEFAULT.max_file_bytes


def register(subparsers: argparse._SubParsersAction) -> None:
    inject = subparsers.add_parser(
        "kube-inject", help="add the pymesh sidecar to the pods of a Kubernetes manifest",
        description="Add the pymesh-init capture container and the pymesh proxy (a native sidecar) to every "
        "pod template of a manifest (Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, "
        "Job, CronJob, Pod, List), honouring Istio's injection annotations and labels. Injected pods are left "
        "as they are, so injecting twice changes nothing.",
        epilog="Exit status: 0 done, 1 a document cannot be injected (nothing is written), 2 bad options.")
    _common(inject)
    inject.add_argument("--settings", "--injectConfigFile", metavar="FILE",
                        help="injector settings YAML, or the ConfigMap whose data.settings holds it (the webhook's)")
    inject.add_argument("--meshConfigFile", metavar="FILE",
                        help="Istio's MeshConfig (or its ConfigMap, data.mesh): defaultConfig.discoveryAddress "
                        "becomes the control server address")
    inject.add_argument("--image", help="the proxy image (and the init image unless --init-image)")
    inject.add_argument("--init-image", help="the pymesh-init image")
    inject.add_argument("--control", metavar="HOST:PORT", help="the control server address the proxies use "
                        f"(default {InjectSettings.control_address})")
    inject.add_argument("--revision", help="inject as this control-plane revision (istio.io/rev)")
    inject.add_argument("--namespace-labels", metavar="K=V,...",
                        help="the labels of the namespace the manifest goes to: applies the webhook's namespace "
                        "selection (istio-injection, pymesh-injection, istio.io/rev) as the API server would")
    inject.set_defaults(func=run_inject)
    uninject = subparsers.add_parser(
        "kube-uninject", help="remove the pymesh sidecar that kube-inject added",
        description="The inverse of kube-inject: remove what the sidecar.pymesh.dev/status annotation records "
        "and restore the app probes; pods pymesh did not inject are left as they are.",
        epilog="Exit status: 0 done, 1 a document cannot be uninjected (nothing is written), 2 bad options.")
    _common(uninject)
    uninject.set_defaults(func=run_uninject)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", required=True, metavar="FILE", help="the manifest; - for stdin")
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")


def run_inject(args: argparse.Namespace) -> int:
    try:
        settings = _settings(args)
        namespace = _namespace(args.namespace_labels)
    except (InjectError, OSError, argparse.ArgumentTypeError) as error:
        return _fail("kube-inject", error, 2)
    return _convert(args, "kube-inject", lambda doc: inject_object(doc, settings, namespace))


def run_uninject(args: argparse.Namespace) -> int:
    return _convert(args, "kube-uninject", uninject_object)


def _convert(args: argparse.Namespace, name: str, change: Callable[[object], object]) -> int:
    try:
        documents = read_documents(_read(args.filename))
    except (ValueError, OSError) as error:
        return _fail(name, error, 1)
    out = []
    for number, document in enumerate(documents, 1):
        try:
            out.append(change(document))
        except InjectError as error:
            return _fail(name, f"document {number} ({_describe(document)}): {error}", 1)
    text = dump_documents(out)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as stream:
                stream.write(text)
        except OSError as error:
            return _fail(name, error, 1)
    else:
        sys.stdout.write(text)
    return 0


def _fail(name: str, error: object, status: int) -> int:
    print(f"pymesh {name}: error: {error}", file=sys.stderr)
    return status


def _describe(document: object) -> str:
    if not isinstance(document, dict):
        return type(document).__name__
    return f"{document.get('kind', '?')} {(document.get('metadata') or {}).get('name', '')}".strip()


def _read(path: str) -> str:
    if path == "-":
        text = sys.stdin.read(MAX_INPUT_BYTES + 1)
    else:
        with open(path, encoding="utf-8") as stream:
            text = stream.read(MAX_INPUT_BYTES + 1)
    limits.check_size(len(text.encode("utf-8")), MAX_INPUT_BYTES, "the manifest")
    return text


def read_documents(text: str) -> list[object]:
    """The YAML documents, bounded as every config load is (pymesh.api.limits); empty ones dropped.
    Anything but a mapping (or a list of them in a List) is refused: it is not a manifest."""
    try:
        limits.scan(yaml.parse(text, Loader=_LOADER), limits.DEFAULT)
        documents = [doc for doc in yaml.load_all(text, Loader=_LOADER) if doc is not None]
    except limits.LimitExceeded as error:
        raise ValueError(f"line {error.line}: {error.message}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"not YAML: {error}") from None
    for number, document in enumerate(documents, 1):
        if not isinstance(document, dict):
            raise ValueError(f"document {number} is a {type(document).__name__}, not a Kubernetes object")
    return documents


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    def ignore_aliases(self, data):  # a manifest spells every value out
        return True


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dump_documents(documents: list[object]) -> str:
    return "---\n".join(yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False) for doc in documents)


def _settings(args: argparse.Namespace) -> InjectSettings:
    settings = InjectSettings()
    if args.settings:
        with open(args.settings, encoding="utf-8") as stream:
            settings = load_settings(stream.read(limits.MIB + 1))
    changes = {key: value for key, value in (("proxy_image", args.image), ("init_image", args.init_image),
                                             ("control_address", args.control or _mesh_discovery(args.meshConfigFile)),
                                             ("revision", args.revision)) if value}
    return dataclasses.replace(settings, **changes) if changes else settings


def _mesh_discovery(path: str | None) -> str | None:
    """MeshConfig defaultConfig.discoveryAddress (istioctl's --meshConfigFile), if given."""
    if not path:
        return None
    with open(path, encoding="utf-8") as stream:
        try:
            mesh = yaml.safe_load(stream.read(limits.MIB + 1)) or {}
        except yaml.YAMLError as error:
            raise InjectError("--meshConfigFile", f"not YAML: {error}") from None
    if isinstance(mesh, dict) and mesh.get("kind") == "ConfigMap":
        mesh = yaml.safe_load(str((mesh.get("data") or {}).get("mesh") or "")) or {}
    if not isinstance(mesh, dict):
        raise InjectError("--meshConfigFile", "expected a MeshConfig mapping")
    address = (mesh.get("defaultConfig") or {}).get("discoveryAddress")
    return str(address) if address else None


def _namespace(labels: str | None) -> dict | None:
    if labels is None:
        return None
    from pymesh.proxy.command import parse_labels

    return {"metadata": {"labels": parse_labels(labels)}}
