"""Training/serving skew: a batch of serving data (or a log of served requests) against the
statistics of the data the served model was trained on, and the schema's SERVING environment.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from typing import Any

from ops.queries import Metadata
from pipeline import lineage
from pipeline import validation as V


class MonitoringError(ValueError):
    """The input can't be checked; the message says why."""


def training_statistics(md: Metadata, model: lineage.Artifact) -> tuple[lineage.Artifact, int]:
    """StatisticsGen's output for the newest span the model was trained on, and that span."""
    examples = lineage.examples_trained_on(md.graph, model)
    if not examples:
        raise MonitoringError(f"model {model.id}: no training data found in its lineage")
    newest = max(examples, key=lambda a: (lineage.span_of(a), a.order))
    for execution, outputs in md.consumers(newest):
        if execution.component == "statistics_gen" and outputs.get("statistics"):
            return outputs["statistics"][0], lineage.span_of(newest)
    raise MonitoringError(f"examples {newest.id}: no statistics recorded for them")


def _input_files(path: str) -> list[str]:
    """The data files at `path` (a folder, a file or a glob; local or gs://)."""
    import tensorflow as tf

    if tf.io.gfile.isdir(path):
        files = sorted(f for f in tf.io.gfile.glob(os.path.join(path, "*")) if f.endswith((".csv", ".jsonl", ".json")))
    else:
        files = sorted(tf.io.gfile.glob(path))
    if not files:
        raise MonitoringError(f"--data {path}: no .csv or .jsonl files")
    kinds = {os.path.splitext(f)[1] in (".jsonl", ".json") for f in files}
    if len(kinds) > 1:
        raise MonitoringError(f"--data {path}: mixes CSV and JSON lines; check one kind at a time")
    return files


def _instances(files: list[str]):
    """Instances from JSON lines: one instance object per line, or a request body
    {"instances": [...]} per line (what `serve --request-log` writes)."""
    import tensorflow as tf

    for name in files:
        with tf.io.gfile.GFile(name) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise MonitoringError(f"{name}:{number}: not JSON ({e.msg})") from e
                items = record["instances"] if isinstance(record, dict) and "instances" in record else [record]
                if not isinstance(items, list):
                    raise MonitoringError(f'{name}:{number}: "instances" must be a list')
                for item in items:
                    if not isinstance(item, dict):
                        raise MonitoringError(f"{name}:{number}: an instance must be an object of feature values")
                    yield {k: (v[0] if isinstance(v, list) and len(v) == 1 else v) for k, v in item.items()}


def serving_statistics(path: str):
    """TFDV statistics of CSV files (TFDV infers types as CsvExampleGen does) or JSON lines
    (written to a temporary CSV first, so both go through the same decoder)."""
    import tensorflow_data_validation as tfdv

    files = _input_files(path)
    if files[0].endswith(".csv"):
        import tensorflow as tf

        for f in files:
            if tf.io.gfile.stat(f).length == 0:
                raise MonitoringError(f"{f}: empty file")
        pattern = files[0] if len(files) == 1 else os.path.join(os.path.dirname(files[0]), "*.csv")
        return tfdv.generate_statistics_from_csv(pattern)
    rows = list(_instances(files))
    if not rows:
        raise MonitoringError(f"--data {path}: no instances")
    columns = sorted({k for r in rows for k in r})
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "instances.csv")
        with open(out, "w", newline="") as csv_file:
            writer = csv.DictWriter(csv_file, fieldnames=columns)
            writer.writeheader()
            writer.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
        return tfdv.generate_statistics_from_csv(out)


def check_skew(md: Metadata, data_path: str, schema_path: str, model_ref: str | None = None) -> dict[str, Any]:
    """Serving data against the served model's training data: schema anomalies in the
    SERVING environment and skew per feature (the schema's skew_comparator thresholds)."""
    target = md.resolve(model_ref) if model_ref else md.served()
    if target is None:
        raise MonitoringError("no pushed model in the metadata store: run the pipeline first")
    model = md.model_of(target)
    stats_artifact, span = training_statistics(md, model)
    training = V.load_statistics(os.path.join(stats_artifact.uri, "Split-train"))
    schema = V.load_schema(schema_path)
    serving = V.restrict_to_environment(serving_statistics(data_path), schema, "SERVING")
    rows = V.validate(serving, schema, environment="SERVING")
    skew_rows, measured = V.compare(serving, training, schema, kind="skew", environment="SERVING")
    rows += skew_rows
    features: dict[str, dict[str, Any]] = {}
    for c in measured:
        features.setdefault(c.feature, {})["skew"] = {
            "measure": c.measure,
            "value": c.value,
            "threshold": c.threshold,
            "exceeded": c.exceeded,
        }
    for r in rows:
        features.setdefault(r["feature"], {}).setdefault("anomalies", []).append(
            {"kind": r["kind"], "description": r["description"]}
        )
    return {
        "data": data_path,
        "rows": V.num_examples(serving),
        "model_id": model.id,
        "training_statistics": stats_artifact.uri,
        "training_span": span,
        "ok": not rows,
        "anomalies": rows,
        "features": features,
    }


def format_report(report: dict[str, Any]) -> str:
    lines = [
        f"{report['data']}: {report['rows']} rows against the training data of model {report['model_id']} "
        f"(span {report['training_span']})",
        "",
        f"{'feature':<24} {'skew':<28} anomalies",
    ]
    for name, info in sorted(report["features"].items()):
        skew = info.get("skew")
        skew_text = (
            f"{skew['measure']} {skew['value']:.4f} / {skew['threshold']}" + (" HIGH" if skew["exceeded"] else "")
            if skew
            else "-"
        )
        anomalies = "; ".join(f"{a['kind']}: {a['description']}" for a in info.get("anomalies", [])) or "-"
        lines.append(f"{name:<24} {skew_text:<28} {anomalies}")
    lines += [
        "",
        "ok: no anomalies, no skew beyond the schema's thresholds"
        if report["ok"]
        else f"NOT OK: {len(report['anomalies'])} problem(s)",
    ]
    return "\n".join(lines)
