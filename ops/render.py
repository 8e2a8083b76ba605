"""Human-readable rendering of the metadata queries: tables, the lineage tree, comparisons.

Each renderer takes the plain data that `pipeline.metadata` returns (the same data `--json`
prints), so the table and the JSON cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Sequence
from typing import Any

SHOWN_METRICS = ("example_count", "auc", "binary_accuracy", "precision", "recall")


def _time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def runs_table(runs: list[dict]) -> str:
    rows = []
    for r in runs:
        states = r["components"]
        by_state: dict[str, list[str]] = {}
        for name, state in states.items():
            by_state.setdefault(state, []).append(name)
        summary = ", ".join(
            f"{state}: {', '.join(names)}" if state != "ran" or len(by_state) == 1 else f"{state}: {len(names)}"
            for state, names in sorted(by_state.items())
        )
        rows.append(
            [
                r["run_id"],
                _time(r["start_ms"]),
                _time(r["end_ms"]),
                f"{(r['end_ms'] - r['start_ms']) / 1000:.0f}s",
                r["status"] + (f" ({r['accepted_anomalies']} accepted)" if r.get("accepted_anomalies") else ""),
                r["pushed_version"] or "-",
                summary,
            ]
        )
    return table(["run", "start (UTC)", "end (UTC)", "took", "status", "pushed", "components"], rows)


def _props(a: dict) -> str:
    return " ".join(f"{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in a["properties"].items())


def artifacts_table(artifacts: list[dict]) -> str:
    rows = [[a["id"], a["type"], f"{a['component']}.{a['output_key']}", a["run_id"], a["uri"], _props(a)] for a in artifacts]
    return table(["id", "type", "produced by", "run", "uri", "properties"], rows)


def _label(node: dict) -> str:
    text = f"{node['type']} #{node['id']}  {node['uri']}"
    props = _props(node)
    return f"{text}  ({props})" if props else text


def _execution_label(e: dict) -> str:
    text = f"<- {e['component']} (execution {e['id']}, {e['state']})"
    if e.get("accepted"):
        text += f"  accepted anomalies: {', '.join(e['accepted'])}"
    if e.get("input_base"):
        text += f"  source: {e['input_base']}"
    if e.get("train_args"):
        text += f"  train_args: {json.dumps(e['train_args'], separators=(',', ':'))}"
    return text


def lineage_tree(node: dict) -> str:
    lines = [_label(node)]
    _children(node, "", lines)
    return "\n".join(lines)


def _children(node: dict, prefix: str, lines: list[str]) -> None:
    if node.get("seen"):
        lines[-1] += "  (see above)"
        return
    items: list[tuple[str, Any]] = []
    for key, value in node.get("resolved", {}).items():
        for resolved in value if isinstance(value, list) else [value]:
            items.append(("resolved", (key, resolved)))
    if "produced_by" in node:
        items.append(("produced", node["produced_by"]))
    for d in node.get("described_by", []):
        items.append(("described", d))
    for c in node.get("consumed_by", []):
        items.append(("consumed", c))
    for i, (kind, item) in enumerate(items):
        last = i == len(items) - 1
        branch, child_prefix = ("└─ ", prefix + "   ") if last else ("├─ ", prefix + "│  ")
        if kind == "described":
            lines.append(f"{prefix}{branch}described by {_label(item)}")
            continue
        if kind == "resolved":
            # What the component resolved from earlier runs (the window, warm start, baseline,
            # drift reference): named here, its own lineage under its own id.
            lines.append(f"{prefix}{branch}{item[0].replace('_', ' ')}: {_label(item[1])}")
            continue
        execution = item["execution"]
        if kind == "produced":
            lines.append(f"{prefix}{branch}{_execution_label(execution)}")
            entries = [(k, n) for k, nodes in item["inputs"].items() for n in nodes]
            extra = []
            if execution.get("hparams"):
                extra.append("hyperparameters: " + json.dumps(execution["hparams"], separators=(",", ":")))
            if execution.get("module_fingerprint"):
                extra.append(f"code: modules@{execution['module_fingerprint']}")
            extra += [f"also produced {_label(s)}" for s in item.get("also_produced", [])]
        else:
            lines.append(f"{prefix}{branch}-> {execution['component']} (execution {execution['id']}, {execution['state']})")
            entries = [(k, n) for k, nodes in item["outputs"].items() for n in nodes]
            extra = []
        total = len(extra) + len(entries)
        for j, text in enumerate(extra):
            lines.append(f"{child_prefix}{'└─ ' if j == total - 1 else '├─ '}{text}")
        for j, (key, child) in enumerate(entries, start=len(extra)):
            end = j == total - 1
            lines.append(f"{child_prefix}{'└─ ' if end else '├─ '}{key}: {_label(child)}")
            _children(child, child_prefix + ("   " if end else "│  "), lines)


def _fmt(value, metric: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"  # undefined (AUC of a slice with one class), as the report says
    if metric == "example_count":
        return f"{value:.0f}"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _slice_order(name: str):
    """overall first, then by feature, numeric values in numeric order."""
    if name == "overall":
        return (0, "", 0, "")
    feature, _, value = name.partition("=")
    try:
        return (1, feature, float(value), "")
    except ValueError:
        return (1, feature, float("inf"), value)


def comparison(result: dict) -> str:
    a, b = result["a"], result["b"]

    def name(side):
        art = side["artifact"]
        return art["properties"].get("pushed_version") or f"{art['type']} #{art['id']}"

    lines = [f"A: {name(a)} (model #{a['model_id']})", f"B: {name(b)} (model #{b['model_id']})", ""]
    slices = list(dict.fromkeys([*a["metrics"], *b["metrics"]]))
    slices.sort(key=_slice_order)
    from ops.evaluation import constant_label

    rows = []
    for s in slices:
        ma, mb = a["metrics"].get(s, {}), b["metrics"].get(s, {})
        constant = constant_label(ma) or constant_label(mb)
        if constant:
            rows.append([s, constant, "", "", ""])
        for m in SHOWN_METRICS:
            if m in ma or m in mb:
                va, vb = ma.get(m), mb.get(m)
                delta = va - vb if isinstance(va, float) and isinstance(vb, float) and m != "example_count" else None
                shown = f"{delta:+.4f}" if delta is not None and not math.isnan(delta) else ""
                rows.append([s, m, _fmt(va, m), _fmt(vb, m), shown])
    lines.append(table(["slice", "metric", "A", "B", "A - B"], rows) if rows else "(no evaluations recorded)")
    lines.append("")
    if result["differences"]:
        lines.append(
            table(
                ["input that differs", "A", "B"],
                [[k, json.dumps(v[0]), json.dumps(v[1])] for k, v in result["differences"].items()],
            )
        )
    else:
        lines.append("inputs: identical")
    return "\n".join(lines)
