"""Python filters' metrics in the metrics store, and their Prometheus text.

A filter's metric lives in the store as a family keyed "~<prometheus name>|<kind>" (kind:
counter, gauge, or histogram:<bounds>), labelled with (name, value) pairs, so every worker's
values merge and render like Istio's families without a declaration table: filters declare
theirs at run time. User metrics are pymesh_filter_<name>{filter="ns/name"}; the engine's own
are pymesh_python_filter_* (errors, loop blocked), so the two never collide.
"""

from __future__ import annotations

from pymesh.telemetry.envoy_prometheus import escape

_MARK = "~"
USER_PREFIX = "pymesh_filter_"


def family(name: str, kind: str) -> str:
    return f"{_MARK}{name}|{kind}"


def cells_for(store, filter_name: str):
    """The pymesh.filters.metrics cell factory of one filter."""
    labels = (("filter", filter_name),)

    def cell(kind: str, metric: str, size: int) -> list:
        name = USER_PREFIX + metric
        if kind == "counter" and not name.endswith("_total"):
            name += "_total"
        return store.cell(family(name, kind), labels, size)

    return cell


def exposition(families: dict[str, dict[tuple, list]]) -> bytes:
    """Prometheus text format of the filter families among `families` (the store's)."""
    out = []
    for key in sorted(k for k in families if k.startswith(_MARK)):
        name, _, kind = key[1:].partition("|")
        series = families[key]
        if not series:
            continue
        if not kind.startswith("histogram:"):
            out.append(f"# TYPE {name} {kind}\n")
            for labels, cell in sorted(series.items()):
                out.append(f"{name}{{{_labels(labels)}}} {cell[0]}\n")
            continue
        bounds = [_number(b) for b in kind[len("histogram:"):].split(",") if b] + ["+Inf"]
        out.append(f"# TYPE {name} histogram\n")
        for labels, cell in sorted(series.items()):
            text, total = _labels(labels), 0
            for le, n in zip(bounds, cell):
                total += n
                out.append(f'{name}_bucket{{{text},le="{le}"}} {total}\n')
            out.append(f"{name}_sum{{{text}}} {cell[-1]}\n{name}_count{{{text}}} {total}\n")
    return "".join(out).encode()


def _labels(pairs: tuple) -> str:
    return ",".join(f'{k}="{escape(v)}"' for k, v in pairs)


def _number(text: str) -> str:
    value = float(text)
    return str(int(value)) if value.is_integer() else repr(value)
