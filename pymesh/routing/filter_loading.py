"""Load a PythonFilter's class when its snapshot is compiled, so that a filter that does not
import rejects the snapshot (and the proxy keeps its last good one) instead of failing requests.

Three sources, one per form of `module`:
- `package.module:Class`: imported from the proxy's own environment (its image), the default;
- a file, read beside its YAML (static configuration): the path the loader resolved and checked;
- a file's text shipped by the control server (`--ship-filter-code`); the proxy's side accepts
  it only when run with `--accept-filter-code` (pymesh.proxy.filter_code checks that on receipt).

A file is executed as a fresh module named after its content's hash, so an edited file is new
code at the next reload and the same text is executed once however many compiles see it. It is
one self-contained file (it may import installed packages, not its neighbours): code spread over
several files belongs in an installed package. The class must subclass pymesh.filters.HttpFilter.
Hooks are never run here.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import types

from pymesh.api import model
from pymesh.filters import HttpFilter

MAX_SOURCE = 1024 * 1024  # bytes of one filter file
_PREFIX = "pymesh_filter_file_"


class FilterLoadError(ValueError):
    """A PythonFilter's module cannot be loaded; rejects the snapshot like an invalid resource.
    (A ValueError: every place that compiles snapshots already turns those into a rejection.)"""


def load_class(f: model.PythonFilter) -> type:
    """The filter class of `f`, or FilterLoadError naming the resource and the module."""
    module = f.module
    try:
        if module.import_path:
            module_name, _, class_name = module.import_path.partition(":")
            namespace = importlib.import_module(module_name).__dict__
        else:
            class_name = module.class_name
            namespace = _exec_file(module)
    except FilterLoadError as error:
        raise FilterLoadError(f"{_who(f)}: {error}") from None
    except (Exception, SystemExit) as error:  # a user's module may raise anything at import
        raise FilterLoadError(f"{_who(f)}: cannot import: {type(error).__name__}: {error}") from error
    target = namespace.get(class_name)
    if target is None:
        raise FilterLoadError(f"{_who(f)}: the module has no {class_name!r}")
    if not isinstance(target, type) or not issubclass(target, HttpFilter):
        what = "a class" if isinstance(target, type) else type(target).__name__
        raise FilterLoadError(f"{_who(f)}: {class_name} is {what}, not a subclass of pymesh.filters.HttpFilter")
    return target


def _who(f: model.PythonFilter) -> str:
    return f"PythonFilter {f.metadata.namespace}/{f.metadata.name} (module {f.module.describe()})"


def _exec_file(module: model.FilterModule) -> dict:
    """The namespace of the file's module: its shipped source, else its resolved file."""
    if module.source:
        source, filename = module.source.encode(), f"<shipped {module.file}>"
    elif module.resolved:
        filename = module.resolved
        try:
            with open(filename, "rb") as stream:
                source = stream.read(MAX_SOURCE + 1)
        except OSError as error:
            raise FilterLoadError(f"cannot read {filename}: {error.strerror or error}") from None
    else:
        raise FilterLoadError("the file's code was not sent with the configuration (a control server "
                              "sends it only when run with --ship-filter-code)")
    if len(source) > MAX_SOURCE:
        raise FilterLoadError(f"{filename} is over the {MAX_SOURCE // 1024} KiB limit for a filter file")
    name = _PREFIX + hashlib.sha256(source).hexdigest()[:24]
    loaded = sys.modules.get(name)
    if loaded is None:
        code = compile(source, filename, "exec", dont_inherit=True)
        loaded = types.ModuleType(name)
        loaded.__file__ = filename
        sys.modules[name] = loaded  # dataclasses and pickling look classes up by module name
        try:
            exec(code, loaded.__dict__)
        except BaseException:
            del sys.modules[name]
            raise
    return loaded.__dict__
