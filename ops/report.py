"""`runner.py report <run>`: one static HTML page per run, readable in any browser offline.

Sections: the run, the data gate's verdict, statistics per feature (with histograms), anomalies,
drift against the previous span, skew (with --serving-data), and the evaluation per slice.
No scripts and no external assets, so it can be attached to a ticket or served from a bucket.
"""

from __future__ import annotations

import dataclasses
import html
import os
from typing import Any

import tensorflow as tf

from ops.evaluation import sliced_metrics
from ops.queries import Metadata, RunInfo, prop
from pipeline import gate as data_gate
from pipeline import lineage
from pipeline import pipeline as P
from pipeline import validation as V

SECTIONS = ("run", "gate", "statistics", "anomalies", "drift", "skew", "evaluation")

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;width:100%}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#17692f;font-weight:600}.bad{color:#b00020;font-weight:600}.muted{color:#777}
svg{display:block}nav a{margin-right:1em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list[Any]], numeric: frozenset[int] = frozenset()) -> str:
    if not rows:
        return '<p class="muted">none</p>'
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bars(values: list[float], width: int = 160, height: int = 28) -> str:
    """A tiny inline SVG bar chart."""
    if not values or max(values) <= 0:
        return ""
    step = width / len(values)
    top = max(values)
    rects = "".join(
        f'<rect x="{i * step:.1f}" y="{height - v / top * height:.1f}" width="{max(step - 1, 1):.1f}" '
        f'height="{v / top * height:.1f}" fill="#4a78c2"/>'
        for i, v in enumerate(values)
    )
    return f'<svg width="{width}" height="{height}" role="img">{rects}</svg>'


def _fmt(x: float) -> str:
    return f"{x:,.4g}" if isinstance(x, float) else f"{x:,}"


def statistics_rows(stats) -> list[list[Any]]:
    rows: list[list[Any]] = []
    dataset = stats.datasets[0] if stats.datasets else None
    if dataset is None:
        return rows
    total = dataset.num_examples
    for f in sorted(dataset.features, key=lambda f: ".".join(f.path.step) or f.name):
        name = ".".join(f.path.step) or f.name
        if f.HasField("num_stats"):
            s = f.num_stats
            common = s.common_stats
            hist = next((h for h in s.histograms if h.type == h.STANDARD), None)
            chart = _bars([b.sample_count for b in hist.buckets]) if hist else ""
            summary = f"mean {_fmt(s.mean)}, sd {_fmt(s.std_dev)}, min {_fmt(s.min)}, max {_fmt(s.max)}"
        elif f.HasField("string_stats"):
            s = f.string_stats
            common = s.common_stats
            top = list(s.top_values)[:8]
            chart = _bars([t.frequency for t in top])
            summary = f"{s.unique} unique; top: " + ", ".join(f"{_e(t.value)} ({int(t.frequency)})" for t in top[:4])
        else:
            continue
        # A CSV's empty cell is a feature present with no value: count values, not presence.
        with_value = min(common.tot_num_values, total)
        missing = 1 - with_value / total if total else 0.0
        rows.append([_e(name), _e(type(f).Type.Name(f.type)), _fmt(with_value), f"{missing:.1%}", summary, chart])
    return rows


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
    passes = lineage.passed_examples(md.store, lineage.pipeline_artifacts(md.store, md.pipeline_name, lineage.GATE_RESULT_TYPE))
    earlier = [(lineage.span_of(e), result.id, result) for e, result in passes if lineage.span_of(e) < span]
    reference_span, _, reference = max(earlier, key=lambda t: t[:2], default=(None, None, None))
    drift: dict[str, list[dict]] = {}
    rejected: list[dict] = []
    if stats is not None and reference is not None:
        rejected, measured = V.drift_by_split(stats.uri, reference.uri, schema, ("train", "eval"), span)
        drift = {split: [dataclasses.asdict(m) for m in ms] for split, ms in measured.items()}
    return {"state": gate_run.state, "accepted": [], "rejected": rejected, "drift": drift, "reference_span": reference_span}


def build(md: Metadata, run_id: str | None, schema_path: str, serving_data: str | None = None) -> str:
    """The report's HTML for a run (default: the latest)."""
    run = md.run(run_id) if run_id else md.latest_run()
    schema = V.load_schema(schema_path)
    parts = [
        f"<h1>Pipeline {_e(md.pipeline_name)}: run {_e(run.run_id)}</h1>",
        "<nav>" + "".join(f'<a href="#{s}">{s}</a>' for s in SECTIONS) + "</nav>",
    ]

    status_class = "ok" if run.status == "complete" else "bad"
    parts.append(f'<h2 id="run">Run</h2><p>Status: <span class="{status_class}">{_e(run.status)}</span></p>')
    parts.append(_table(["component", "state"], [[_e(n), _e(c.state)] for n, c in run.components.items()]))

    outcome = _gate_outcome(md, run, schema)
    verdict = {
        "passed": '<span class="ok">passed</span>',
        "failed": '<span class="bad">failed: the run stopped before Transform</span>',
    }
    parts.append(f'<h2 id="gate">Data gate</h2><p>{verdict.get(outcome["state"], _e(outcome["state"]))}</p>')
    if outcome["accepted"]:
        parts.append("<p>Anomalies accepted by the operator for this run:</p>" + _anomaly_table(outcome["accepted"]))

    parts.append('<h2 id="statistics">Statistics</h2>')
    stats = run.output(P.STATISTICS_GEN, "statistics")
    if stats is None:
        parts.append('<p class="muted">no statistics in this run</p>')
    else:
        for split in ("train", "eval"):
            path = os.path.join(stats.uri, f"Split-{split}")
            if tf.io.gfile.isdir(path):
                s = V.load_statistics(path)
                parts.append(f"<h3>{split}: {V.num_examples(s):,} rows</h3>")
                parts.append(
                    _table(
                        ["feature", "type", "with a value", "missing", "summary", "distribution"],
                        statistics_rows(s),
                        numeric=frozenset({2, 3}),
                    )
                )

    parts.append('<h2 id="anomalies">Anomalies</h2>')
    anomalies = run.output(P.EXAMPLE_VALIDATOR, "anomalies")
    rows = []
    if anomalies is not None:
        for split in ("train", "eval"):
            path = os.path.join(anomalies.uri, f"Split-{split}")
            if tf.io.gfile.isdir(path):
                rows += V.anomaly_rows(V.load_anomalies(path), split=split)
    parts.append("<p>ExampleValidator, against the curated schema:</p>" + _anomaly_table(rows))
    if outcome["rejected"]:
        parts.append("<p>Drift beyond the schema's thresholds:</p>" + _anomaly_table(outcome["rejected"]))

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

    parts.append('<h2 id="evaluation">Evaluation</h2>')
    evaluation = run.output(P.EVALUATOR, "evaluation")
    blessing = run.output(P.EVALUATOR, "blessing")
    if evaluation is None:
        parts.append('<p class="muted">no evaluation in this run</p>')
    else:
        blessed = blessing is not None and prop(blessing, "blessed")
        parts.append(f'<p>Blessed: <span class="{"ok" if blessed else "bad"}">{"yes" if blessed else "no"}</span></p>')
        sliced = sliced_metrics(evaluation.uri)
        names = ["auc", "binary_accuracy", "precision", "recall", "example_count"]
        parts.append(
            _table(
                ["slice", *names],
                [
                    [_e(slice_name), *(_fmt(metrics[n]) if n in metrics else "" for n in names)]
                    for slice_name, metrics in sorted(sliced.items(), key=lambda kv: (kv[0] != "overall", kv[0]))
                ],
                numeric=frozenset({1, 2, 3, 4, 5}),
            )
        )

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
