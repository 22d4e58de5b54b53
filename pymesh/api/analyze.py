"""`pymesh analyze PATH...`: validate configuration files and list every problem, with file, line
and field path, before they reach a control server or proxy: errors (exit 1), then warnings
(exit 0 when there are only warnings): resources and fields pymesh does not apply, and what the
compiler warns about for the proxies the configuration would run on (pymesh.routing.analysis).
A PythonFilter's module is imported (its top level runs, never a hook): one that does not load,
or names no HttpFilter subclass, is an error, as it would reject a proxy's snapshot.

With --kubernetes, the live cluster's custom resources (pymesh.control.kube.cluster_config) are
analyzed too, each named `<kind> <namespace>/<name>` as Istio names them, together with any
files given (as `istioctl analyze FILE` analyzes a change against the cluster)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from dataclasses import dataclass

from pymesh.api import limits as input_limits, model
from pymesh.api.limits import Limits
from pymesh.api.load import LoadResult, load_paths
from pymesh.api.offload import OffloadFailed, run_in_child
from pymesh.routing.analysis import CompileWarning, compile_warnings, module_errors


@dataclass(frozen=True)
class Analysis:
    result: LoadResult
    compile_warnings: tuple[CompileWarning, ...]  # only when the configuration has no errors


def analyze(paths: list[str], limits: Limits, objects: tuple[dict, ...] = ()) -> Analysis:
    """Load, and when that succeeds compile for each proxy (in the child: both are bounded).
    `objects`: custom resources as the API server's JSON decodes, each loaded on its own."""
    result = load_paths(paths, limits) if paths else LoadResult(model.MeshConfig(), [])
    if objects:
        from pymesh.kube.custom_resources import load_object

        result = _merged([result, *(load_object(obj, limits) for obj in objects)])
    unloadable = module_errors(result.config)  # PythonFilter modules, imported here (in the child)
    if unloadable:
        result = dataclasses.replace(result, errors=[*result.errors, *unloadable])
    return Analysis(result, () if result.errors else tuple(compile_warnings(result.config)))


def _merged(results: list[LoadResult]) -> LoadResult:
    """One result of several loads (the API server keeps names unique per kind and namespace)."""
    fields = model.MeshConfig.__dataclass_fields__
    config = model.MeshConfig(**{name: tuple(r for result in results for r in getattr(result.config, name))
                                 for name in fields})
    return LoadResult(config, [e for r in results for e in r.errors], tuple(f for r in results for f in r.files),
                      tuple(w for r in results for w in r.warnings))


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="validate mesh configuration files and report every error",
        description="Load Istio-shaped YAML resources (files, or directories searched for *.yaml "
        "and *.yml; with --kubernetes, a cluster's custom resources too) and print every problem as "
        "'file:line path: message' ('<kind> <namespace>/<name>: path: message' for the cluster's). Exits 1 "
        "when there are errors, 0 when the configuration is valid (warnings do not change the exit code: "
        "resources of kinds pymesh does not implement and Istio fields it ignores are warnings, errors with "
        "--strict).",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="YAML file or directory")
    cluster = parser.add_argument_group("a live cluster (through its API server)")
    cluster.add_argument("--kubernetes", "-k", action="store_true",
                         help="analyze the cluster's Istio, pymesh and Gateway API custom resources (with the files "
                         "given, as if they were applied); a kind whose CRD is not installed is skipped")
    cluster.add_argument("--kubeconfig", metavar="FILE",
                         help="the kubeconfig (default $KUBECONFIG, ~/.kube/config; in a pod, its ServiceAccount)")
    cluster.add_argument("--context", metavar="NAME", help="the kubeconfig context (default: its current one)")
    scope = cluster.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", metavar="NS", help="only this namespace's resources (default: default)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="every namespace's resources")
    input_limits.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Loads in a child process, as the proxy and control server reload, so the time limit
    applies here too."""
    limits = input_limits.from_args(args)
    if not args.paths and not args.kubernetes:
        print("pymesh analyze: give a PATH, or --kubernetes for a cluster's resources", file=sys.stderr)
        return 2
    objects: tuple[dict, ...] = ()
    if args.kubernetes:
        from pymesh.control.kube.cluster_config import read_cluster

        cluster = asyncio.run(read_cluster(args.kubeconfig, args.context,
                                           None if args.all_namespaces else args.namespace or "default"))
        if cluster.skipped:
            print(f"note: skipped, their CustomResourceDefinitions are not installed: {', '.join(cluster.skipped)}",
                  file=sys.stderr)
        if cluster.errors:
            for error in cluster.errors:
                print(f"error: {error}")
            return 1
        objects = tuple(cluster.objects)
    try:
        analysis = asyncio.run(run_in_child(analyze, args.paths, limits, objects, timeout=limits.load_timeout))
    except OffloadFailed as error:
        print(f"{', '.join(args.paths) or 'the cluster'}: {error}")
        return 1
    result = analysis.result
    for error in result.errors:
        print(error)
    for warning in (*result.warnings, *analysis.compile_warnings):
        print(warning)
    warnings = len(result.warnings) + len(analysis.compile_warnings)
    and_warnings = f", {_count(warnings, 'warning')}" if warnings else ""
    _print_gateway_api_status(result.config)
    sources = "file" if not args.kubernetes else "object" if not args.paths else "source"
    if result.errors:
        files = len({error.file for error in result.errors})
        print(f"{_count(len(result.errors), 'error')} in {_count(files, sources)}{and_warnings}")
        return 1
    read = _count(len(result.files), "file") if args.paths else ""
    if args.kubernetes:
        read += (" and " if read else "") + f"{_count(len(objects), 'object')} from the cluster"
    print(f"ok: {_count(result.resource_count, 'resource')} in {read}{and_warnings}")
    return 0


def _print_gateway_api_status(config) -> None:
    """Gateway API objects' status conditions, as an implementation would write them: a route
    that did not attach or a backend that does not resolve is valid YAML but does not work."""
    from pymesh.routing import gateway_api  # the command's one use of the routing layer

    if not gateway_api.has_gateway_api(config):
        return
    for status in gateway_api.translate(config).statuses:
        problems = status.problems()
        for line in problems:
            print(f"warning: {line}")
        if not problems:
            print(f"{status.kind} {status.namespace + '/' if status.namespace else ''}{status.name}: "
                  + ", ".join(f"{c.type}={c.status}" for c in status.conditions or
                              [c for p in status.parents for c in p.conditions][:2]))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
