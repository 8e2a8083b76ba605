"""`runner.py report <run>`: one static HTML page per run, readable in any browser offline.

The verdict first (the gate, the blessing, the pushed version, the headline metrics against
their thresholds and the baseline); then train and eval distributions overlaid per feature,
with anomalies and drift marked on the feature; anomalies, drift, skew (with --serving-data),
the evaluation per slice (natural order, n/a where undefined, bars against the threshold), and
the components.
No scripts and no external assets, so it can be attached to a ticket or served from a bucket.
"""

from __future__ import annotations

import dataclasses
import html
import math
import os
from typing import Any

import tensorflow as tf

from ops.evaluation import constant_label, slice_thresholds, sliced_metrics, thresholds
from ops.queries import Metadata, RunInfo, prop
from ops.render import _slice_order
from pipeline import gate as data_gate
from pipeline import lineage
from pipeline import pipeline as P
from pipeline import validation as V

SECTIONS = ("verdict", "gate", "statistics", "anomalies", "drift", "skew", "evaluation", "run")

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1180px;color:#222;padding:0 1em}
h1{font-size:1.45em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.5em 0;width:100%}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:middle}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#17692f;font-weight:600}.bad{color:#b00020;font-weight:600}.warn{color:#a15c00;font-weight:600}
.muted{color:#777}svg{display:block}nav a{margin-right:1em}
.verdict{display:flex;flex-wrap:wrap;gap:10px;margin:.8em 0}
.card{border:1px solid #ccc;border-radius:6px;padding:8px 12px;min-width:150px;background:#fafafa}
.card b{display:block;font-size:1.35em}.card.pass{background:#e6f4ea;border-color:#7cbf8e}
.card.fail{background:#fde7e9;border-color:#e08a94}.card small{color:#555}
tr.flag td:first-child{border-left:4px solid #b00020}
.badge{display:inline-block;background:#b00020;color:#fff;border-radius:3px;padding:0 4px;margin:1px;font-size:11px}
.badge.warn{background:#a15c00}.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 10px;vertical-align:middle}
"""

TRAIN_COLOUR, EVAL_COLOUR = "#3b6fc4", "#e8833a"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list[Any]], numeric: frozenset[int] = frozenset(), flagged=frozenset()) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        ('<tr class="flag">' if n in flagged else "<tr>")
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for n, r in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:,.4g}" if isinstance(x, float) else f"{x:,}"


def _tick(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


# --- Distributions: train and eval overlaid ------------------------------------------------------


def _features(stats) -> dict[str, Any]:
    dataset = stats.datasets[0] if stats.datasets else None
    return {(".".join(f.path.step) or f.name): f for f in (dataset.features if dataset else [])}


def _numeric_chart(splits: dict[str, Any], width: int = 300, height: int = 74) -> str:
    """Overlaid histograms (share of rows per unit of x) with an x axis; log scale (log1p) when
    the tail is long, so that a fare of 700 does not squeeze every other trip into one bar."""
    stats = [f.num_stats for f in splits.values() if f.num_stats.common_stats.num_non_missing]
    if not stats:
        return ""
    lo, hi = min(s.min for s in stats), max(s.max for s in stats)
    log = lo >= 0 and hi > 20 * max(max(s.median for s in stats), 1e-9)
    # Equal-width buckets put a long tail's whole body into one bar: there, the quantile
    # buckets (equal mass, narrow where the rows are) drawn on a log axis show the shape.
    kind = "QUANTILES" if log else "STANDARD"
    hists = {}
    for split, f in splits.items():
        hist = next((h for h in f.num_stats.histograms if type(h).HistogramType.Name(h.type) == kind), None)
        if hist is not None and hist.buckets:
            hists[split] = hist.buckets
    if not hists or hi <= lo:
        return ""

    def scale(v: float) -> float:
        return math.log1p(v) if log else v

    s_lo, s_hi = scale(lo), scale(hi)
    span = (s_hi - s_lo) or 1.0
    plot_h = height - 16

    def x(v: float) -> float:
        return 4 + (scale(v) - s_lo) / span * (width - 8)

    shapes = []
    densities = {}
    for split, buckets in hists.items():
        total = sum(b.sample_count for b in buckets) or 1
        densities[split] = [
            (b, b.sample_count / total / max(scale(b.high_value) - scale(b.low_value), span / 60)) for b in buckets
        ]
    top = max((d for ds in densities.values() for _, d in ds), default=0) or 1
    for split, colour in (("train", TRAIN_COLOUR), ("eval", EVAL_COLOUR)):
        for b, d in densities.get(split, []):
            h = d / top * plot_h
            shapes.append(
                f'<rect x="{x(b.low_value):.1f}" y="{plot_h - h:.1f}" width="{max(x(b.high_value) - x(b.low_value), 1):.1f}" '
                f'height="{h:.1f}" fill="{colour}" fill-opacity="0.45" stroke="{colour}" stroke-width="0.6"/>'
            )
    mid = math.expm1((s_lo + s_hi) / 2) if log else (s_lo + s_hi) / 2
    axis = (
        f'<line x1="4" y1="{plot_h}" x2="{width - 4}" y2="{plot_h}" stroke="#555"/>'
        + "".join(
            f'<line x1="{x(v):.1f}" y1="{plot_h}" x2="{x(v):.1f}" y2="{plot_h + 3}" stroke="#555"/>'
            f'<text x="{x(v):.1f}" y="{height - 2}" font-size="10" text-anchor="{anchor}">{_tick(v)}</text>'
            for v, anchor in ((lo, "start"), (mid, "middle"), (hi, "end"))
        )
        + (f'<text x="{width - 4}" y="10" font-size="10" text-anchor="end" fill="#555">log scale</text>' if log else "")
    )
    label = 'role="img" aria-label="train and eval distributions"'
    return f'<svg width="{width}" height="{height}" {label}>{"".join(shapes)}{axis}</svg>'


def _categorical_chart(splits: dict[str, Any], width: int = 300, shown: int = 6) -> str:
    """The most frequent values (in train): each split's share side by side."""
    shares: dict[str, dict[str, float]] = {}
    for split, f in splits.items():
        s = f.string_stats
        counts = {b.label: b.sample_count for b in s.rank_histogram.buckets} or {t.value: t.frequency for t in s.top_values}
        total = s.common_stats.tot_num_values or sum(counts.values()) or 1
        shares[split] = {k: v / total for k, v in counts.items()}
    reference = shares.get("train") or next(iter(shares.values()))
    values = sorted(reference, key=lambda k: -reference[k])[:shown]
    if not values:
        return ""
    top = max(max(shares[sp].get(v, 0) for v in values) for sp in shares) or 1
    row, label_w = 12, 112
    parts = []
    for i, value in enumerate(values):
        y = i * row
        parts.append(f'<text x="{label_w - 4}" y="{y + 9}" font-size="10" text-anchor="end">{_e(value[:16])}</text>')
        for j, (split, colour) in enumerate((("train", TRAIN_COLOUR), ("eval", EVAL_COLOUR))):
            w = shares.get(split, {}).get(value, 0) / top * (width - label_w - 30)
            parts.append(f'<rect x="{label_w}" y="{y + 1 + j * 5}" width="{w:.1f}" height="5" fill="{colour}"/>')
    height = len(values) * row + 2
    return f'<svg width="{width}" height="{height}" role="img" aria-label="most frequent values">{"".join(parts)}</svg>'


def _values(f, total: int) -> int:
    """Rows with a value (a CSV's empty cell is a feature present with no value: values are
    counted, not presence)."""
    common = f.num_stats.common_stats if f.HasField("num_stats") else f.string_stats.common_stats
    return min(int(common.tot_num_values), total)


def _missing_cell(f, total: int) -> str:
    """The share of rows without a value, in words that match the numbers beside it: "all
    missing" only when no row has one; a handful of values is counted, not rounded away."""
    have = _values(f, total)
    if total == 0 or have == total:
        return "0.0%"
    if have == 0:
        return '<span class="bad">all missing</span>'
    if have < 0.005 * total:
        return f'<span class="bad">{have:,} of {total:,} have a value</span>'
    share = 1 - have / total
    return f'<span class="warn">{"&lt;0.1%" if share < 0.001 else f"{share:.1%}"}</span>'


def statistics_rows(by_split: dict[str, Any], flags: dict[str, list[str]]) -> tuple[list[list[Any]], set[int]]:
    """One row per feature: its type, the share missing per split, a summary, train and eval
    overlaid; `flags` (feature -> anomaly and drift kinds) become badges and a marked row."""
    features = {split: _features(s) for split, s in by_split.items()}
    totals = {split: (s.datasets[0].num_examples if s.datasets else 0) for split, s in by_split.items()}
    names = sorted(set().union(*[set(f) for f in features.values()])) if features else []
    rows: list[list[Any]] = []
    flagged: set[int] = set()
    for name in names:
        splits = {sp: fs[name] for sp, fs in features.items() if name in fs}
        first = next(iter(splits.values()))
        missing_cells = []
        for split in by_split:
            if split not in splits:
                missing_cells.append("")
                continue
            missing_cells.append(_missing_cell(splits[split], totals[split]))
        if first.HasField("num_stats"):
            s = first.num_stats
            summary = f"mean {_fmt(s.mean)}, sd {_fmt(s.std_dev)}, min {_fmt(s.min)}, max {_fmt(s.max)}"
            chart = _numeric_chart({sp: f for sp, f in splits.items() if f.HasField("num_stats")})
        elif first.HasField("string_stats"):
            summary = f"{first.string_stats.unique:,} unique values"
            chart = _categorical_chart({sp: f for sp, f in splits.items() if f.HasField("string_stats")})
        else:
            continue
        badges = "".join(f'<span class="badge">{_e(k)}</span>' for k in flags.get(name, []))
        all_missing = any('class="bad"' in c for c in missing_cells)
        if badges or all_missing:
            flagged.add(len(rows))
        rows.append([f"<b>{_e(name)}</b><br>{badges}", _e(type(first).Type.Name(first.type)), *missing_cells, summary, chart])
    return rows, flagged


def _anomaly_table(rows: list[dict]) -> str:
    return _table(
        ["span", "split", "feature", "kind", "description"],
        [[_e(r.get("span", "")), _e(r.get("split", "")), _e(r["feature"]), _e(r["kind"]), _e(r["description"])] for r in rows],
    )


def _comparison_table(measured: list[dict]) -> str:
    return _table(
        ["feature", "measure", "value", "threshold", ""],
        [
            [
                _e(m["feature"]),
                _e(m["measure"]),
                f"{m['value']:.4f}",
                f"{m['threshold']:g}",
                '<span class="bad">beyond threshold</span>' if m["value"] > m["threshold"] else '<span class="ok">ok</span>',
            ]
            for m in measured
        ],
        numeric=frozenset({2, 3}),
    )


def _gate_outcome(md: Metadata, run: RunInfo, schema) -> dict[str, Any]:
    """What the gate decided for this run: from its result if it passed, recomputed from the
    statistics if it failed (a failed execution publishes nothing)."""
    gate_run = run.components.get(P.DATA_GATE)
    result = run.output(P.DATA_GATE, "result")
    if result is not None:
        summary = data_gate.read_result(result.uri)
        return {
            "state": "passed",
            "accepted": summary["accepted"],
            "rejected": [],
            "drift": summary["drift"],
            "reference_span": summary["reference_span"],
        }
    if gate_run is None:
        return {"state": "not run", "accepted": [], "rejected": [], "drift": {}, "reference_span": None}
    stats = run.output(P.STATISTICS_GEN, "statistics")
    examples = run.output(P.EXAMPLE_GEN, "examples")
    span = lineage.span_of(examples) if examples is not None else 0
    # The reference the gate measured against, found as the gate finds it.
    reference = lineage.drift_reference(md.graph, examples) if examples is not None else None
    reference_span = lineage.span_of(reference) if reference is not None else None
    drift: dict[str, list[dict]] = {}
    rejected: list[dict] = []
    if stats is not None and reference is not None:
        rejected, measured = V.drift_by_split(stats.uri, reference.uri, schema, ("train", "eval"), span)
        drift = {split: [dataclasses.asdict(m) for m in ms] for split, ms in measured.items()}
    return {"state": gate_run.state, "accepted": [], "rejected": rejected, "drift": drift, "reference_span": reference_span}


SHOWN = ("auc", "binary_accuracy", "precision", "recall")
LABELS = {"auc": "AUC", "binary_accuracy": "accuracy", "precision": "precision", "recall": "recall"}


def _metric(metrics: dict[str, float], name: str) -> float | None:
    """A slice's metric, or None where it is undefined: NaN, or AUC on a slice with one class."""
    value = metrics.get(name)
    if value is None or math.isnan(value):
        return None
    if name == "auc" and metrics.get("mean_label") in (0.0, 1.0):
        return None
    return value


def _bar(value: float | None, minimum: float | None, width: int = 110, lo: float = 0.5) -> str:
    """A small bar on [lo, 1] with the blessing threshold as a tick."""
    if value is None:
        return ""
    w = max(0.0, (value - lo) / (1 - lo)) * width
    colour = "#b00020" if minimum is not None and value < minimum else "#3b8f4e"
    tick = ""
    if minimum is not None:
        t = (minimum - lo) / (1 - lo) * width
        tick = f'<line x1="{t:.1f}" y1="0" x2="{t:.1f}" y2="12" stroke="#222" stroke-width="1.5"/>'
    return f'<svg width="{width}" height="12"><rect x="0" y="2" width="{w:.1f}" height="8" fill="{colour}"/>{tick}</svg>'


def _card(title: str, value: str, note: str = "", state: str = "") -> str:
    return f'<div class="card {state}"><small>{_e(title)}</small><b>{value}</b><small>{note}</small></div>'


def _verdict(run: RunInfo, outcome: dict, evaluation, blessing, sliced, baseline, limits) -> str:
    gate_state = outcome["state"]
    gate_note = f"{len(outcome['accepted'])} accepted by the operator" if outcome["accepted"] else ""
    if outcome["rejected"]:
        gate_note = f"{len(outcome['rejected'])} problems"
    cards = [
        _card(
            "data gate",
            _e(gate_state),
            _e(gate_note),
            "pass" if gate_state == "passed" else "fail" if gate_state == "failed" else "",
        )
    ]
    if evaluation is None:
        cards.append(_card("model", "not evaluated"))
    else:
        blessed = bool(blessing is not None and prop(blessing, "blessed"))
        cards.append(_card("model", "blessed" if blessed else "not blessed", "", "pass" if blessed else "fail"))
    version = run.pushed_version
    cards.append(
        _card("pushed", _e(version) if version else "nothing", "served version" if version else "", "pass" if version else "")
    )
    overall = sliced.get("overall", {})
    base = baseline.get("overall", {})
    for name in ("auc", "binary_accuracy"):
        value = _metric(overall, name)
        if value is None:
            continue
        notes, state = [], "pass"
        limit = limits.get(name, {})
        if "min" in limit:
            notes.append(f"min {limit['min']:g}")
            state = "pass" if value >= limit["min"] else "fail"
        if _metric(base, name) is not None:
            delta = value - base[name]
            notes.append(f"baseline {base[name]:.4f} ({delta:+.4f})")
            if delta < -limit.get("max_drop", 0.0):
                state = "fail"
        cards.append(_card(LABELS[name], f"{value:.4f}", _e(", ".join(notes)), state))
    ran = sum(1 for c in run.components.values() if c.state == "ran")
    cached = sum(1 for c in run.components.values() if c.state == "cached")
    status_class = "ok" if run.status == "complete" else "bad"
    return (
        '<section id="verdict"><div class="verdict">'
        + "".join(cards)
        + f'</div><p>Run <span class="{status_class}">{_e(run.status)}</span>: {len(run.components)} components, '
        f'{ran} ran, {cached} cached (<a href="#run">details</a>).</p></section>'
    )


def _evaluation(sliced, baseline, limits, gated: dict | None = None) -> str:
    gated = gated or {}
    if not sliced:
        return '<p class="muted">no metrics recorded</p>'
    with_baseline = bool(baseline)
    headers = ["slice", "examples"]
    for name in SHOWN:
        headers.append(LABELS[name])
        if name == "auc":
            headers.append("")
        if with_baseline and name in ("auc", "binary_accuracy"):
            headers.append(f"baseline {LABELS[name]}")
    rows = []
    for slice_name in sorted(sliced, key=_slice_order):
        metrics, base = sliced[slice_name], baseline.get(slice_name, {})
        label = _e(slice_name)
        if slice_name in gated:
            label += '<br><span class="badge">gates the blessing</span>'
        constant = constant_label(metrics)
        if constant:
            label += f'<br><span class="muted">{_e(constant)}</span>'
        row = [label, _fmt(metrics.get("example_count"))]
        for name in SHOWN:
            value = _metric(metrics, name)
            row.append(_fmt(value))
            if name == "auc":
                minimum = (
                    limits.get("auc", {}).get("min")
                    if slice_name == "overall"
                    else gated.get(slice_name, {}).get("auc", {}).get("min")
                )
                row.append(_bar(value, minimum))
            if with_baseline and name in ("auc", "binary_accuracy"):
                row.append(_fmt(_metric(base, name)))
        rows.append(row)
    numeric = frozenset(i for i, h in enumerate(headers) if i > 0 and h)
    notes = [f"{LABELS.get(m, m)} at least {t['min']:g}" for m, t in limits.items() if "min" in t]
    notes += [f"{LABELS.get(m, m)} at most {t['max_drop']:g} below the baseline" for m, t in limits.items() if "max_drop" in t]
    for slice_name, metrics_limits in gated.items():
        for m, t in metrics_limits.items():
            notes.append(
                f"on {slice_name}: {LABELS.get(m, m)} at least {t.get('min', 0):g}"
                + (f", at most {t['max_drop']:g} below the baseline" if "max_drop" in t else "")
            )
    legend = (
        f"<p>Blessing requires, on the whole eval set: {_e('; '.join(notes))}. n/a: undefined on that slice "
        "(a slice whose label is constant has no AUC, and never gates).</p>"
        if notes
        else ""
    )
    return legend + _table(headers, rows, numeric=numeric)


def _feature_flags(anomaly_rows: list[dict], outcome: dict) -> dict[str, list[str]]:
    flags: dict[str, list[str]] = {}
    for r in [*anomaly_rows, *outcome["rejected"], *outcome["accepted"]]:
        kinds = flags.setdefault(r["feature"], [])
        if r["kind"] not in kinds:
            kinds.append(r["kind"])
    for measured in outcome["drift"].values():
        for m in measured:
            if m["value"] > m["threshold"]:
                kinds = flags.setdefault(m["feature"], [])
                if "drift" not in kinds:
                    kinds.append("drift")
    return flags


def build(md: Metadata, run_id: str | None, schema_path: str, serving_data: str | None = None) -> str:
    """The report's HTML for a run (default: the latest)."""
    run = md.run(run_id) if run_id else md.latest_run()
    schema = V.load_schema(schema_path)
    outcome = _gate_outcome(md, run, schema)
    evaluation = run.output(P.EVALUATOR, "evaluation")
    blessing = run.output(P.EVALUATOR, "blessing")
    sliced = sliced_metrics(evaluation.uri) if evaluation is not None else {}
    baseline = sliced_metrics(evaluation.uri, model="baseline") if evaluation is not None else {}
    limits = thresholds(evaluation.uri) if evaluation is not None else {}
    gated = {k: v for k, v in slice_thresholds(evaluation.uri).items() if k != "overall"} if evaluation is not None else {}

    anomalies = run.output(P.EXAMPLE_VALIDATOR, "anomalies")
    anomaly_rows: list[dict] = []
    if anomalies is not None:
        for split in ("train", "eval"):
            path = os.path.join(anomalies.uri, f"Split-{split}")
            if tf.io.gfile.isdir(path):
                anomaly_rows += V.anomaly_rows(V.load_anomalies(path), split=split)

    parts = [
        f"<h1>{_e(md.pipeline_name)}: run {_e(run.run_id)}</h1>",
        _verdict(run, outcome, evaluation, blessing, sliced, baseline, limits),
        "<nav>" + "".join(f'<a href="#{s}">{s}</a>' for s in SECTIONS[1:]) + "</nav>",
    ]

    verdict = {
        "passed": '<span class="ok">passed</span>',
        "failed": '<span class="bad">failed: the run stopped before Transform</span>',
    }
    parts.append(f'<h2 id="gate">Data gate</h2><p>{verdict.get(outcome["state"], _e(outcome["state"]))}</p>')
    if outcome["rejected"]:
        parts.append("<p>What stopped it:</p>" + _anomaly_table(outcome["rejected"]))
    if outcome["accepted"]:
        parts.append("<p>Anomalies accepted by the operator for this run:</p>" + _anomaly_table(outcome["accepted"]))

    parts.append('<h2 id="statistics">Statistics: train and eval</h2>')
    stats = run.output(P.STATISTICS_GEN, "statistics")
    by_split = {}
    if stats is not None:
        for split in ("train", "eval"):
            path = os.path.join(stats.uri, f"Split-{split}")
            if tf.io.gfile.isdir(path):
                by_split[split] = V.load_statistics(path)
    if not by_split:
        parts.append('<p class="muted">no statistics in this run</p>')
    else:
        counts = ", ".join(f"{split} {V.num_examples(s):,} rows" for split, s in by_split.items())
        parts.append(
            f'<p class="legend">{counts}.<span style="background:{TRAIN_COLOUR}"></span>train'
            f'<span style="background:{EVAL_COLOUR}"></span>eval (share of rows; numeric axes in the feature\'s units). '
            "Marked rows: an anomaly or drift, or no value at all.</p>"
        )
        rows, flagged = statistics_rows(by_split, _feature_flags(anomaly_rows, outcome))
        headers = ["feature", "type", *(f"missing ({split})" for split in by_split), "summary", "train vs eval"]
        parts.append(_table(headers, rows, numeric=frozenset(range(2, 2 + len(by_split))), flagged=flagged))

    parts.append('<h2 id="anomalies">Anomalies</h2>')
    parts.append("<p>ExampleValidator, against the curated schema:</p>" + _anomaly_table(anomaly_rows))

    parts.append('<h2 id="drift">Drift</h2>')
    if outcome["reference_span"] is None:
        parts.append('<p class="muted">no earlier span to compare with</p>')
    else:
        parts.append(f"<p>Against span {_e(outcome['reference_span'])}, the newest earlier span that passed the gate.</p>")
        for split, measured in outcome["drift"].items():
            parts.append(f"<h3>{_e(split)}</h3>" + _comparison_table(measured))

    parts.append('<h2 id="skew">Skew</h2>')
    if serving_data:
        from ops import monitoring

        skew = monitoring.check_skew(md, serving_data, schema_path)
        parts.append(f"<p>{_e(skew['data'])}: {skew['rows']:,} rows against the training data of model {skew['model_id']}.</p>")
        parts.append(_comparison_table([{"feature": f, **i["skew"]} for f, i in sorted(skew["features"].items()) if "skew" in i]))
        parts.append(_anomaly_table(skew["anomalies"]))
    else:
        parts.append('<p class="muted">no serving data given (report --serving-data FILE)</p>')

    parts.append('<h2 id="evaluation">Evaluation per slice</h2>')
    if evaluation is None:
        parts.append('<p class="muted">no evaluation in this run</p>')
    else:
        parts.append(_evaluation(sliced, baseline, limits, gated))

    parts.append('<h2 id="run">Components</h2>')
    parts.append(_table(["component", "state"], [[_e(n), _e(c.state)] for n, c in run.components.items()]))

    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{_e(md.pipeline_name)} run {_e(run.run_id)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>"
    )


def write(md: Metadata, run_id: str | None, schema_path: str, output: str, serving_data: str | None = None) -> str:
    page = build(md, run_id, schema_path, serving_data)
    tf.io.gfile.makedirs(os.path.dirname(output) or ".")
    with tf.io.gfile.GFile(output, "w") as f:
        f.write(page)
    return output
