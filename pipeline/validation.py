"""Data validation shared by the pipeline's gate, `runner.py validate` and `runner.py report`.

Everything here works on TFDV protos (statistics, schema, anomalies) and plain rows, so it is
the same code whether the statistics come from StatisticsGen, from a batch of serving data or
from a log of served requests.

An anomaly row is a dict: span, split, feature, kind (TFDV's reason type, e.g.
ENUM_TYPE_UNEXPECTED_STRING_VALUES or COMPARATOR_L_INFTY_HIGH), description.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import tensorflow as tf
import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from pipeline.errors import DataValidationError, format_rows  # noqa: F401 - re-exported

# Reasons that compare two datasets; everything else is the data against the schema.
DRIFT_KINDS = (
    "COMPARATOR_L_INFTY_HIGH",
    "COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH",
    "COMPARATOR_NORMALIZED_ABSOLUTE_DIFFERENCE_HIGH",
    "QUANTILE_SHIFT_HIGH",
    "SCALE_SHIFT_HIGH",
    "PRESENCE_CHANGE_HIGH",
    "TIME_FAR_FROM_PREVIOUS",
    "LABEL_RATE_CHANGE_HIGH",
)
DATASET = "(dataset)"


# Artifact URIs are not file paths (gs:// on Vertex): every read goes through tf.io.gfile.
def load_schema(path: str) -> schema_pb2.Schema:
    with tf.io.gfile.GFile(path) as f:
        return text_format.Parse(f.read(), schema_pb2.Schema())


def load_statistics(path: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """FeatureStats.pb as written by StatisticsGen (one split's folder or the file itself)."""
    if tf.io.gfile.isdir(path):
        path = os.path.join(path, "FeatureStats.pb")
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with tf.io.gfile.GFile(path, "rb") as f:
        stats.ParseFromString(f.read())
    return stats


def load_anomalies(path: str) -> anomalies_pb2.Anomalies:
    """SchemaDiff.pb as written by ExampleValidator (one split's folder or the file itself)."""
    if tf.io.gfile.isdir(path):
        path = os.path.join(path, "SchemaDiff.pb")
    anomalies = anomalies_pb2.Anomalies()
    with tf.io.gfile.GFile(path, "rb") as f:
        anomalies.ParseFromString(f.read())
    return anomalies


def num_examples(stats: statistics_pb2.DatasetFeatureStatisticsList) -> int:
    return sum(d.num_examples for d in stats.datasets)


def anomaly_rows(anomalies: anomalies_pb2.Anomalies, **tags) -> list[dict]:
    """One row per (feature, reason), sorted by feature."""
    rows = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        for reason in info.reason or [None]:
            kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type) if reason else "UNKNOWN"
            rows.append(
                {
                    **tags,
                    "feature": feature,
                    "kind": kind,
                    "description": (reason.description if reason else info.description) or info.description,
                }
            )
    if anomalies.HasField("dataset_anomaly_info"):
        for reason in anomalies.dataset_anomaly_info.reason:
            rows.append(
                {
                    **tags,
                    "feature": DATASET,
                    "kind": anomalies_pb2.AnomalyInfo.Type.Name(reason.type),
                    "description": reason.description,
                }
            )
    return rows


def empty_data_rows(stats: statistics_pb2.DatasetFeatureStatisticsList, **tags) -> list[dict]:
    """TFDV reports nothing for an empty dataset; an empty span is an anomaly here."""
    if num_examples(stats):
        return []
    return [{**tags, "feature": DATASET, "kind": "EMPTY_DATA", "description": "no rows"}]


def restrict_to_environment(stats, schema, environment: str):
    """The statistics without the features the schema says are absent in `environment` (at
    SERVING: the label's source, the split key). Serving data may or may not carry them; either
    way they say nothing about skew."""
    absent = {f.name for f in schema.feature if environment in f.not_in_environment}
    out = statistics_pb2.DatasetFeatureStatisticsList()
    out.CopyFrom(stats)
    for dataset in out.datasets:
        kept = [f for f in dataset.features if ".".join(f.path.step) not in absent]
        del dataset.features[:]
        dataset.features.extend(kept)
    return out


def validate(stats, schema, environment: str | None = None, **tags) -> list[dict]:
    """The data against the schema (no comparisons)."""
    return empty_data_rows(stats, **tags) + anomaly_rows(tfdv.validate_statistics(stats, schema, environment=environment), **tags)


@dataclasses.dataclass(frozen=True)
class Comparison:
    """How far one feature's distribution moved between two datasets, and the schema's limit."""

    feature: str
    measure: str  # "L_infinity", "Jensen-Shannon", "decile shift", "scale factor", "presence change"
    value: float
    threshold: float

    @property
    def exceeded(self) -> bool:
        return self.value > self.threshold


def _measure_name(t: int) -> str:
    return {
        anomalies_pb2.DriftSkewInfo.Measurement.L_INFTY: "L_infinity",
        anomalies_pb2.DriftSkewInfo.Measurement.JENSEN_SHANNON_DIVERGENCE: "Jensen-Shannon",
        anomalies_pb2.DriftSkewInfo.Measurement.NORMALIZED_ABSOLUTE_DIFFERENCE: "normalized abs. difference",
    }.get(t, str(t))


def compare(
    current, reference, schema, kind: str = "drift", environment: str | None = None, **tags
) -> tuple[list[dict], list[Comparison]]:
    """Drift (`reference` = the previous span) or skew (`current` = serving data,
    `reference` = training data), using the schema's drift_comparator / skew_comparator
    thresholds. Returns (anomaly rows beyond a threshold, every measurement)."""
    if kind == "drift":
        anomalies = tfdv.validate_statistics(current, schema, environment=environment, previous_statistics=reference)
    elif kind == "skew":
        anomalies = tfdv.validate_statistics(reference, schema, environment=environment, serving_statistics=current)
    else:
        raise ValueError(f"kind: 'drift' or 'skew', got {kind!r}")
    rows = [r for r in anomaly_rows(anomalies, **tags) if r["kind"] in DRIFT_KINDS]
    measurements = []
    for info in anomalies.drift_skew_info:
        feature = ".".join(info.path.step)
        values = info.drift_measurements if kind == "drift" else info.skew_measurements
        for m in values:
            measurements.append(Comparison(feature, _measure_name(m.type), round(m.value, 4), round(m.threshold, 4)))
    return rows, sorted(measurements, key=lambda c: (not c.exceeded, c.feature))


def drift_by_split(
    current_uri: str, reference_uri: str, schema, splits: Sequence[str], span: int, limits=None
) -> tuple[list[dict], dict[str, list[Comparison]]]:
    """Drift of every split between two statistics artifacts (folders of Split-<name>/): the
    schema's comparators, and with `limits` (data_checks.Limits) every numeric feature's
    decile shift, the scale factor of the positive amounts and every schema feature's share of
    rows with a value."""
    from pipeline import data_checks

    rows: list[dict] = []
    measured: dict[str, list[Comparison]] = {}
    for split in splits:
        current = load_statistics(os.path.join(current_uri, f"Split-{split}"))
        reference = load_statistics(os.path.join(reference_uri, f"Split-{split}"))
        found, measured[split] = compare(current, reference, schema, kind="drift", span=span, split=split)
        rows += found
        if limits is not None:
            features = [f.name for f in schema.feature]
            found_rows, found_measures = [], []
            for found_split in (
                data_checks.quantile_rows(current, reference, limits, span=span, split=split),
                data_checks.scale_rows(current, reference, limits, span=span, split=split),
                data_checks.presence_rows(current, reference, features, limits, span=span, split=split),
            ):
                found_rows += found_split[0]
                found_measures += found_split[1]
            rows += found_rows
            measured[split] = sorted(
                measured[split] + [Comparison(**m) for m in found_measures], key=lambda c: (not c.exceeded, c.feature)
            )
    return rows, measured
