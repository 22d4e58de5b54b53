"""PythonFilter (apiVersion pymesh.dev/v1alpha1): a user's Python filter class in the sidecar's
filter chain, shaped after Istio's WasmPlugin (extensions.istio.io/v1alpha1) so that people who
know it read it at once:

    spec:
      selector: {matchLabels: {app: ratings}}   # or targetRefs: [{kind: Service, name: ratings}]
      module: my_filters.apikey:ApiKeyCheck     # importable; or {file: filters/apikey.py, class: ApiKeyCheck}
      phase: AUTHN                              # AUTHN | AUTHZ | STATS | UNSPECIFIED_PHASE (default)
      priority: 10                              # higher first within a phase
      match: [{mode: SERVER, ports: [{number: 8080}]}]
      pluginConfig: {header: x-api-key}         # a mapping of any YAML, handed to the filter
      failStrategy: FAIL_OPEN                   # FAIL_CLOSE (default, as Istio) | FAIL_OPEN

Validated here as far as YAML can tell: the module's form, a `file` that stays inside the
directory of the YAML file naming it (no absolute path, no `..`, no symlink out of it), a JSON-able
pluginConfig within a size limit. Whether the module imports and names a filter class is
decided when the snapshot is compiled (pymesh.routing.filter_loading).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re

from pymesh.api import model, shapes
from pymesh.api.reader import PORT, Reader, Sink, Slot, choice, describe, integer, message, text
from pymesh.api.request_authentication import match_labels_selector, target_refs
from pymesh.api.yamltree import LineMap, LineSeq

# WasmPlugin's targetRefs: a gateway (by its gateway-name label) or a Service this proxy serves
TARGET_KINDS = {("", "Service"), ("gateway.networking.k8s.io", "Gateway")}
MAX_PLUGIN_CONFIG = 64 * 1024  # bytes of pluginConfig as JSON: it travels in every push
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
IMPORT_PATH = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}\Z")
CLASS_NAME = re.compile(rf"{_IDENTIFIER}\Z")
_PHASE = choice("phase", model.FILTER_PHASES)
_MODE = choice("mode", model.FILTER_MODES)
_FAIL = choice("failStrategy", ("FAIL_CLOSE", "FAIL_OPEN"))
_INT32 = integer(-(2**31), 2**31 - 1)


def python_filter(metadata: model.Metadata, r: Reader) -> model.PythonFilter:
    return model.PythonFilter(
        metadata=metadata,
        module=_module(r, metadata.source.file),
        selector=match_labels_selector(r),
        target_refs=target_refs(r, metadata.namespace, TARGET_KINDS),
        phase=r.get("phase", _PHASE, "UNSPECIFIED_PHASE"),
        priority=r.get("priority", _INT32, 0),
        match=r.get_list("match", message(shapes.FILTER_MATCH, _match)),
        plugin_config=_plugin_config(r),
        fail_strategy=r.get("failStrategy", _FAIL, "FAIL_CLOSE"),
    )


def _match(r: Reader) -> model.FilterMatch:
    ports = r.get_list("ports", message(shapes.PORT_SELECTOR, lambda p: p.get("number", PORT, 0, required=True)))
    return model.FilterMatch(mode=r.get("mode", _MODE, "UNDEFINED"), ports=ports)


def _module(r: Reader, yaml_file: str) -> model.FilterModule:
    slot = r.slot("module", required=True)
    if slot is None:
        return model.FilterModule()
    if isinstance(slot.value, str):
        if not IMPORT_PATH.match(slot.value):
            r.sink.at(slot, f"module {slot.value!r} must be package.module:Class (or {{file: ..., class: ...}})")
        return model.FilterModule(import_path=slot.value)
    return message(shapes.FILTER_MODULE, lambda m: _file_module(m, yaml_file))(r.sink, slot) or model.FilterModule()


def _file_module(r: Reader, yaml_file: str) -> model.FilterModule:
    file = r.get("file", text(_relative_py), "", required=True)
    class_name = r.get("class", text(lambda v: None if CLASS_NAME.match(v) else f"{v!r} is not a class name"), "",
                       required=True)
    resolved = ""
    if file and not os.path.isfile(yaml_file):
        r.error("file", f"file {file!r}: a file module is read beside its YAML file, and {yaml_file} is not one "
                        "(use an importable package.module:Class)")
    elif file:
        resolved, problem = resolve_inside(os.path.dirname(yaml_file), file)
        if problem:
            r.error("file", problem)
    return model.FilterModule(file=file, class_name=class_name, resolved=resolved)


def _relative_py(value: str) -> str | None:
    """A relative path to a .py file that never climbs (checked on the text: the symlink check
    needs the directory, resolve_inside)."""
    if not value.endswith(".py"):
        return f"file {value!r} must name a .py file"
    if os.path.isabs(value) or value.startswith("~"):
        return f"file {value!r} must be relative to the directory of this YAML file"
    if ".." in re.split(r"[\\/]", value) or "\x00" in value:
        return f"file {value!r} must stay inside the directory of this YAML file (no ..)"
    return None


def resolve_inside(directory: str, relative: str) -> tuple[str, str]:
    """(the real path, "") of `relative` under `directory`, or ("", why not): it must exist and,
    symlinks followed, stay inside the directory."""
    root = os.path.realpath(directory or ".")
    real = os.path.realpath(os.path.join(root, relative))
    if os.path.commonpath([root, real]) != root:
        return "", f"file {relative!r} leads outside {directory} (a symlink out of the configuration directory)"
    if not os.path.isfile(real):
        return "", f"file {relative!r} not found in {directory}"
    return real, ""


def _plugin_config(r: Reader):
    slot = r.slot("pluginConfig")
    if slot is None:
        return None
    if not isinstance(slot.value, LineMap):  # WasmPlugin's is a Struct: the filter reads config[key]
        r.sink.at(slot, f"expected a mapping, got {describe(slot.value)}")
        return None
    value = _json_value(r.sink, slot)
    if value is None:
        return None
    size = len(json.dumps(value, separators=(",", ":")))
    if size > MAX_PLUGIN_CONFIG:
        r.sink.at(slot, f"pluginConfig is {size} bytes as JSON, over the {MAX_PLUGIN_CONFIG // 1024} KiB limit")
        return None
    return value


def _json_value(sink: Sink, slot: Slot):
    """The YAML value as plain JSON data (what the filter and the control protocol carry), or
    None after an error: mapping keys must be strings, numbers finite, no dates or binary."""
    value = slot.value
    if isinstance(value, LineMap):
        out = {}
        for key, item in value.items():
            where = Slot(item, value.key_lines.get(key, slot.line), f"{slot.path}.{key}")
            if not isinstance(key, str):
                sink.at(where, f"pluginConfig keys must be strings, got {key!r}")
                return None
            converted = _json_value(sink, where)
            if converted is None and item is not None:
                return None
            out[key] = converted
        return out
    if isinstance(value, LineSeq):
        items = []
        for index, (item, line) in enumerate(zip(value, value.item_lines)):
            converted = _json_value(sink, Slot(item, line, f"{slot.path}[{index}]"))
            if converted is None and item is not None:
                return None
            items.append(converted)
        return items
    if isinstance(value, float) and not math.isfinite(value):
        sink.at(slot, f"pluginConfig numbers must be finite, got {value}")
        return None
    if isinstance(value, (datetime.date, bytes)):
        sink.at(slot, f"pluginConfig values must be JSON values (strings, numbers, booleans), got {type(value).__name__}")
        return None
    return value
