"""PythonFilters compiled into a proxy's snapshot: which apply (namespace, selector, targetRefs),
per listener direction and port, in WasmPlugin's order; and a module that does not load
rejecting the snapshot with the resource and module named."""

from __future__ import annotations

import json
import textwrap

import pytest

from pymesh.api.load import load_paths, load_text
from pymesh.filters import HttpFilter
from pymesh.routing.compile import compile_snapshot
from pymesh.routing.filter_loading import FilterLoadError
from pymesh.routing.python_filters import for_listener
from pymesh.routing.snapshot import ProxyIdentity

RATINGS = ProxyIdentity(workload="ratings", namespace="default", labels={"app": "ratings", "version": "v1"})
SERVICE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: ratings}}
"""


def pf(name: str, namespace: str = "default", **spec: str) -> str:
    spec.setdefault("module", "pymesh.filters:HttpFilter")
    body = "".join(f"  {key}: {value}\n" for key, value in spec.items())
    return (f"---\napiVersion: pymesh.dev/v1alpha1\nkind: PythonFilter\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}")


def chains(yaml: str, identity: ProxyIdentity = RATINGS):
    result = load_text(SERVICE + yaml, "filters.yaml")
    assert result.ok, result.errors
    filters = compile_snapshot(result.config, identity, "1").python_filters
    return ([s.name.split("/")[1] for s in filters.get("inbound", ())],
            [s.name.split("/")[1] for s in filters.get("outbound", ())])


@pytest.mark.parametrize("yaml, inbound", [
    (pf("ns-wide"), ["ns-wide"]),
    (pf("mesh-wide", "istio-system"), ["mesh-wide"]),
    (pf("elsewhere", "other"), []),
    (pf("picked", selector="{matchLabels: {app: ratings}}"), ["picked"]),
    (pf("not-me", selector="{matchLabels: {app: reviews}}"), []),
    (pf("root-picked", "istio-system", selector="{matchLabels: {version: v1}}"), ["root-picked"]),
    (pf("by-service", targetRefs="[{kind: Service, name: ratings}]"), ["by-service"]),
    (pf("other-service", targetRefs="[{kind: Service, name: reviews}]"), []),
    (pf("a-gateway", targetRefs="[{kind: Gateway, group: gateway.networking.k8s.io, name: edge}]"), []),
])
def test_which_filters_apply(yaml, inbound):
    assert chains(yaml)[0] == inbound


def test_a_gateway_is_picked_by_its_name_and_runs_them_outbound():
    gateway = ProxyIdentity(workload="edge", namespace="default", kind="router",
                            labels={"gateway.networking.k8s.io/gateway-name": "edge"})
    yaml = (pf("edge", targetRefs="[{kind: Gateway, group: gateway.networking.k8s.io, name: edge}]")
            + pf("other", targetRefs="[{kind: Gateway, group: gateway.networking.k8s.io, name: other}]"))
    assert chains(yaml, gateway) == (["edge"], ["edge"])


@pytest.mark.parametrize("match, inbound, outbound", [
    ("[]", True, True),
    ("[{mode: UNDEFINED}]", True, True),
    ("[{mode: CLIENT_AND_SERVER}]", True, True),
    ("[{mode: SERVER}]", True, False),
    ("[{mode: CLIENT}]", False, True),
    ("[{mode: CLIENT}, {mode: SERVER}]", True, True),
])
def test_match_mode_picks_the_direction(match, inbound, outbound):
    assert chains(pf("f", match=match)) == (["f"] if inbound else [], ["f"] if outbound else [])


def test_match_ports_narrow_per_listener_port():
    result = load_text(SERVICE + pf("f", match="[{mode: SERVER, ports: [{number: 9080}]}, {mode: CLIENT}]"), "f.yaml")
    filters = compile_snapshot(result.config, RATINGS, "1").python_filters
    assert [s.name for s in for_listener(filters, "inbound", 9080)] == ["default/f"]
    assert for_listener(filters, "inbound", 8080) == ()
    assert [s.name for s in for_listener(filters, "outbound", 8080)] == ["default/f"]


def test_order_is_phase_then_priority_highest_first_then_age_then_name():
    yaml = (pf("none-high", priority="100")
            + pf("stats", phase="STATS")
            + pf("authz-low", phase="AUTHZ", priority="-1")
            + pf("authz-high", phase="AUTHZ", priority="5")
            + pf("authn-b", phase="AUTHN")
            + pf("authn-a", phase="AUTHN")
            + pf("authn-root", "istio-system", phase="AUTHN"))
    assert chains(yaml)[0] == ["authn-a", "authn-b", "authn-root", "authz-high", "authz-low", "stats", "none-high"]


def test_a_spec_carries_what_the_engine_needs():
    result = load_text(SERVICE + pf("f", phase="AUTHZ", priority="3", failStrategy="FAIL_OPEN",
                                    pluginConfig="{key: value}"), "f.yaml")
    (spec,) = compile_snapshot(result.config, RATINGS, "1").python_filters["inbound"]
    assert (spec.name, spec.module, spec.filter_class, spec.config, spec.phase, spec.priority, spec.fail_strategy) == (
        "default/f", "pymesh.filters:HttpFilter", HttpFilter, {"key": "value"}, "AUTHZ", 3, "FAIL_OPEN")


def test_no_python_filter_no_chain():
    result = load_text(SERVICE, "f.yaml")
    assert compile_snapshot(result.config, RATINGS, "1").python_filters == {}


# --- loading: the class is imported when the snapshot is compiled -------------------------------


def file_snapshot(tmp_path, source: str, class_name: str = "F"):
    (tmp_path / "f.py").write_text(textwrap.dedent(source))
    (tmp_path / "pf.yaml").write_text(pf("f", module=f"{{file: f.py, class: {class_name}}}"))
    result = load_paths([str(tmp_path)])
    assert result.ok, result.errors
    return compile_snapshot(result.config, RATINGS, "1")


def test_a_file_module_loads_its_class(tmp_path):
    (spec,) = file_snapshot(tmp_path, """\
        from pymesh.filters import HttpFilter
        class F(HttpFilter):
            pass
    """).python_filters["inbound"]
    assert issubclass(spec.filter_class, HttpFilter) and spec.filter_class.__name__ == "F"
    assert spec.module == "f.py:F"


@pytest.mark.parametrize("source, class_name, problem", [
    ("def broken(:\n", "F", "cannot import: SyntaxError"),
    ("raise RuntimeError('no config service')\n", "F", "cannot import: RuntimeError: no config service"),
    ("import sys\nsys.exit(3)\n", "F", "cannot import: SystemExit: 3"),
    ("import no_such_module_here\n", "F", "cannot import: ModuleNotFoundError"),
    ("F = 42\n", "F", "F is int, not a subclass of pymesh.filters.HttpFilter"),
    ("def F(): pass\n", "F", "F is function, not a subclass of pymesh.filters.HttpFilter"),
    ("class F: pass\n", "F", "F is a class, not a subclass of pymesh.filters.HttpFilter"),
    ("class G: pass\n", "F", "the module has no 'F'"),
])
def test_a_module_that_does_not_load_rejects_the_snapshot(tmp_path, source, class_name, problem):
    with pytest.raises(FilterLoadError) as raised:
        file_snapshot(tmp_path, source, class_name)
    message = str(raised.value)
    assert message.startswith("PythonFilter default/f (module f.py:F): ") and problem in message, message


@pytest.mark.parametrize("module, problem", [
    ("no_such_package.mod:F", "cannot import: ModuleNotFoundError: No module named 'no_such_package'"),
    ("pymesh.filters:NoSuch", "the module has no 'NoSuch'"),
    ("pymesh.filters:LocalReply", "LocalReply is a class, not a subclass of pymesh.filters.HttpFilter"),
    ("pymesh.filters:PAUSE", "PAUSE is _Pause, not a subclass"),
])
def test_an_import_path_that_does_not_load_rejects_the_snapshot(module, problem):
    result = load_text(SERVICE + pf("f", module=module), "f.yaml")
    with pytest.raises(FilterLoadError, match=f"PythonFilter default/f \\(module {module}\\): "):
        compile_snapshot(result.config, RATINGS, "1")
    with pytest.raises(ValueError) as raised:  # what every snapshot compiler's caller turns into a rejection
        compile_snapshot(result.config, RATINGS, "1")
    assert problem in str(raised.value)


def test_views_that_only_describe_do_not_import(tmp_path):
    result = load_text(SERVICE + pf("f", module="no_such_package.mod:F"), "f.yaml")
    (spec,) = compile_snapshot(result.config, RATINGS, "1", load_filters=None).python_filters["inbound"]
    assert spec.module == "no_such_package.mod:F"


def test_the_same_file_text_runs_once_and_an_edit_is_new_code(tmp_path):
    source = """\
        from pymesh.filters import HttpFilter
        class F(HttpFilter):
            VERSION = {}
    """
    first = file_snapshot(tmp_path, source.format(1)).python_filters["inbound"][0].filter_class
    again = file_snapshot(tmp_path, source.format(1)).python_filters["inbound"][0].filter_class
    edited = file_snapshot(tmp_path, source.format(2)).python_filters["inbound"][0].filter_class
    assert first is again and (first.VERSION, edited.VERSION) == (1, 2)


# --- pymesh explain and pymesh analyze ----------------------------------------------------------

EXPLAINED = (pf("stats", phase="STATS", failStrategy="FAIL_OPEN")
             + pf("key", phase="AUTHN", priority="5", match="[{mode: CLIENT}]")
             + pf("inbound-only", match="[{mode: SERVER}]")
             + pf("not-installed", module="no_such_package.mod:F", match="[{mode: CLIENT, ports: [{number: 9080}]}]")
             + pf("other-port", match="[{mode: CLIENT, ports: [{number: 1234}]}]"))


def test_explain_lists_the_filters_in_order_with_phase_and_fail_strategy(tmp_path, capsys):
    from explain_mesh import mesh_yaml, sidecar_yaml
    from pymesh.cli import main

    path = tmp_path / "mesh.yaml"
    path.write_text(mesh_yaml({"v1": 18001, "v2": 18002}, 18003) + "---" + sidecar_yaml(9080) + EXPLAINED)
    assert main(["explain", "--config", str(path), "--labels", "app=productpage", "--json",
                 "http://reviews:9080/"]) == 0
    filters = json.loads(capsys.readouterr().out)["explanation"]["filters"]
    assert [(f["name"], f["phase"], f["priority"], f["fail_strategy"]) for f in filters] == [
        ("default/key", "AUTHN", 5, "FAIL_CLOSE"),
        ("default/stats", "STATS", 0, "FAIL_OPEN"),
        ("default/not-installed", "UNSPECIFIED_PHASE", 0, "FAIL_CLOSE"),  # listed: explain does not import
    ]
    assert main(["explain", "--config", str(path), "--labels", "app=productpage", "http://reviews:9080/"]) == 0
    rows = [line.split(None, 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("filter ")]
    assert rows[0] == ("default/key (pymesh.filters:HttpFilter): phase AUTHN (before the JWT check), priority 5, "
                       "FAIL_CLOSE")
    assert len(rows) == 3


def test_analyze_imports_every_module_whoever_it_selects(tmp_path, capsys):
    from pymesh.cli import main

    (tmp_path / "broken.py").write_text("raise ImportError('needs a library this image lacks')\n")
    (tmp_path / "filters.yaml").write_text(
        pf("good", selector="{matchLabels: {app: nobody}}")
        + pf("broken", selector="{matchLabels: {app: nobody}}", module="{file: broken.py, class: F}"))
    assert main(["analyze", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    path = tmp_path / "filters.yaml"
    assert lines == [f"{path}:9 spec.module: PythonFilter default/broken (module "
                     "broken.py:F): cannot import: ImportError: needs a library this image lacks",
                     "1 error in 1 file"], lines
    (tmp_path / "broken.py").write_text("from pymesh.filters import HttpFilter\nclass F(HttpFilter):\n    pass\n")
    assert main(["analyze", str(tmp_path)]) == 0


def test_the_dump_shows_the_chain_and_only_the_keys_of_plugin_config():
    result = load_text(SERVICE + pf("f", pluginConfig="{key: s3cret, nested: {token: t}}"), "f.yaml")
    snapshot = compile_snapshot(result.config, RATINGS, "1")
    (dumped,) = snapshot.dump()["python_filters"]["inbound"]
    assert dumped["name"] == "default/f" and dumped["config"] == {"key": "[redacted]", "nested": "[redacted]"}
    assert "s3cret" not in json.dumps(snapshot.dump())
    assert snapshot.dump(include_secrets=True)["python_filters"]["inbound"][0]["config"]["key"] == "s3cret"
