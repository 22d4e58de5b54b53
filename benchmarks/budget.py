"""`python -m benchmarks check RESULT.json`: does a run keep the budget in budget.yaml?

Prints every check with its measured value and limit, and exits 1 listing each breach by name.
A check whose row has no figures in the result is a breach (the promise was not shown to hold);
one whose reference row (`vs`) is missing, say Envoy could not be installed, is skipped and said so.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks import PACKAGE_DIR

DEFAULT_BUDGET = PACKAGE_DIR / "budget.yaml"
BOUNDS = ("max", "min", "max_ratio", "min_ratio")


@dataclass(frozen=True)
class Outcome:
    name: str
    verdict: str  # "ok" | "BREACH" | "skipped"
    detail: str


def load_budget(path: Path) -> list[dict]:
    data = yaml.safe_load(path.read_text()) or {}
    checks = data.get("checks")
    if not isinstance(checks, list) or not checks:
        raise ValueError(f"{path}: expected a non-empty list under 'checks'")
    for i, check in enumerate(checks):
        where = f"{path}: checks[{i}]"
        missing = [k for k in ("name", "row", "metric") if k not in check]
        bounds = [k for k in BOUNDS if k in check]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        if len(bounds) != 1:
            raise ValueError(f"{where} ({check['name']}): needs exactly one of {', '.join(BOUNDS)}")
        if bounds[0].endswith("_ratio") != ("vs" in check):
            raise ValueError(f"{where} ({check['name']}): 'vs' goes with max_ratio/min_ratio and only with them")
    return checks


def figure(result: dict, row: str, metric: str) -> tuple[float | None, str]:
    """The median of a row's metric, or None with the reason it is not there."""
    entry = result.get("rows", {}).get(row)
    if entry is None:
        return None, f"row {row} not in this result"
    if entry.get("status") != "ok":
        return None, f"row {row} {entry.get('status')}"
    summary = entry.get("summary", {}).get(metric)
    if summary is None:
        return None, f"row {row} has no {metric}"
    return summary["median"], ""


def evaluate(check: dict, result: dict) -> Outcome:
    name = check["name"]
    value, why = figure(result, check["row"], check["metric"])
    if value is None:
        return Outcome(name, "BREACH", f"no figure: {why}")
    bound = next(k for k in BOUNDS if k in check)
    limit = float(check[bound])
    measured, unit = value, ""
    if "vs" in check:
        reference, why = figure(result, check["vs"], check["metric"])
        if reference is None:
            return Outcome(name, "skipped", f"no reference: {why}")
        if reference <= 0:
            return Outcome(name, "skipped", f"reference {check['vs']} {check['metric']} is {reference:g}")
        measured, unit = value / reference, "x"
        context = f" ({check['metric']} {value:.1f} vs {check['vs']} {reference:.1f})"
    else:
        context = f" ({check['metric']})"
    within = measured <= limit if bound.startswith("max") else measured >= limit
    sign = ("<=" if within else ">") if bound.startswith("max") else (">=" if within else "<")
    return Outcome(name, "ok" if within else "BREACH", f"measured {measured:.2f}{unit} {sign} limit {limit:g}{unit}{context}")


def check_result(result: dict, checks: list[dict]) -> list[Outcome]:
    return [evaluate(check, result) for check in checks]


def main(args) -> int:
    budget_path = Path(args.budget) if args.budget else DEFAULT_BUDGET
    try:
        checks = load_budget(budget_path)
        result = json.loads(Path(args.result).read_text())
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"check: {exc}", file=sys.stderr)
        return 2
    outcomes = check_result(result, checks)
    width = max(len(o.name) for o in outcomes)
    for o in outcomes:
        print(f"{o.verdict:7} {o.name.ljust(width)}  {o.detail}")
    breaches = [o for o in outcomes if o.verdict == "BREACH"]
    if breaches:
        print(f"\n{len(breaches)} breach(es) of {budget_path}:", file=sys.stderr)
        for o in breaches:
            print(f"  {o.name}: {o.detail}", file=sys.stderr)
        return 1
    print(f"\nwithin budget ({len(outcomes)} checks, {sum(o.verdict == 'skipped' for o in outcomes)} skipped)")
    return 0
