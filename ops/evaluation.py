"""TFMA evaluation artifacts as plain numbers: metric values per slice.

Read without importing TFMA (or TensorFlow): the metrics file is a TFRecord of
`MetricsForSlice` protos, decoded here with TFMA's own generated proto module, loaded by path
so that importing it does not import the `tensorflow_model_analysis` package (seconds of
TensorFlow and Beam imports for `compare`). Non-local URIs (gs://) are read with tf.io.gfile.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import struct
from collections.abc import Iterator
from typing import Any

from ops import files

METRICS_PREFIX = "metrics"  # TFMA writes metrics-00000-of-00001.tfrecord (or `metrics`)


@functools.cache
def _metrics_pb2() -> Any:
    spec = importlib.util.find_spec("tensorflow_model_analysis")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("tensorflow_model_analysis is not installed")
    path = os.path.join(list(spec.submodule_search_locations)[0], "proto", "metrics_for_slice_pb2.py")
    existing = __import__("sys").modules.get("tensorflow_model_analysis.proto.metrics_for_slice_pb2")
    if existing is not None:  # TFMA already imported: its module owns the descriptors
        return existing
    module_spec = importlib.util.spec_from_file_location("_tfma_metrics_for_slice_pb2", path)
    if module_spec is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _records(data: bytes) -> Iterator[bytes]:
    """The records of a TFRecord file: length (u64), its CRC, the data, the data's CRC."""
    offset = 0
    while offset < len(data):
        if offset + 12 > len(data):
            raise ValueError("truncated TFRecord header")
        (length,) = struct.unpack_from("<Q", data, offset)
        start = offset + 12
        if start + length + 4 > len(data):
            raise ValueError("truncated TFRecord")
        yield data[start : start + length]
        offset = start + length + 4


def _metrics_files(evaluation_uri: str) -> list[str]:
    return files.glob(os.path.join(evaluation_uri, METRICS_PREFIX + "*"))


def _slice_name(slice_key: Any) -> str:
    parts = []
    for single in slice_key.single_slice_keys:
        kind = single.WhichOneof("kind")
        value = getattr(single, kind) if kind else ""
        parts.append(f"{single.column}={value.decode() if isinstance(value, bytes) else value}")
    return ", ".join(parts) or "overall"


def overall_metrics(evaluation_uri: str) -> dict[str, float]:
    """The overall slice's metrics from a TFMA evaluation artifact."""
    return sliced_metrics(evaluation_uri).get("overall", {})


def sliced_metrics(evaluation_uri: str, model: str = "candidate") -> dict[str, dict[str, float]]:
    """Slice name ("overall", "payment_type=Cash", ...) -> metric name -> value.

    A model evaluated against a baseline also has the baseline's metrics in the artifact: the
    candidate's are returned, or the baseline's with model="baseline" (empty without one).
    """
    pb2 = _metrics_pb2()
    result = {}
    for path in _metrics_files(evaluation_uri):
        for record in _records(files.read_bytes(path)):
            metrics = pb2.MetricsForSlice.FromString(record)
            values = {}
            for kv in metrics.metric_keys_and_values:
                if (kv.key.model_name or "candidate") != model:
                    continue  # the other model's copy
                if kv.key.is_diff:
                    continue
                if kv.value.HasField("double_value"):
                    values[kv.key.name] = kv.value.double_value.value
            if values:
                result[_slice_name(metrics.slice_key)] = values
    return result


def _snake(class_name: str) -> str:
    import re

    return {"AUC": "auc"}.get(class_name) or re.sub(r"(?<!^)(?=[A-Z])", "_", class_name).lower()


def constant_label(metrics: dict[str, float]) -> str | None:
    """ "label constant: 0 positives in N rows" for a slice whose label never varies (cash tips
    are not recorded: no cash trip is a big tipper), where AUC is undefined and nothing gates."""
    mean, count = metrics.get("mean_label"), metrics.get("example_count")
    if mean in (0.0, 1.0) and count is not None:
        positives = 0 if mean == 0.0 else int(count)
        return f"label constant: {positives} positives in {int(count)} rows"
    return None


def _slice_spec_name(spec: dict) -> str:
    values = spec.get("featureValues") or {}
    return ", ".join(f"{k}={v}" for k, v in sorted(values.items())) or "overall"


def slice_thresholds(evaluation_uri: str) -> dict[str, dict[str, dict[str, float]]]:
    """The blessing thresholds from the evaluation's eval_config.json, by slice ("overall",
    "payment_type=Credit Card"): metric -> {"min": lower bound} and/or {"max_drop": how much
    worse than the baseline}."""
    import json

    path = os.path.join(evaluation_uri, "eval_config.json")
    try:
        config = json.loads(files.read_bytes(path))["evalConfig"]
    except (OSError, KeyError, ValueError):
        return {}
    found: dict[str, dict[str, dict[str, float]]] = {}
    for spec in config.get("metricsSpecs", []):
        for metric in spec.get("metrics", []):
            for per_slice in metric.get("perSliceThresholds", []):
                threshold = per_slice.get("threshold", {})
                for slicing in per_slice.get("slicingSpecs") or [{}]:
                    entry = found.setdefault(_slice_spec_name(slicing), {}).setdefault(_snake(metric["className"]), {})
                    if "lowerBound" in threshold.get("valueThreshold", {}):
                        entry["min"] = float(threshold["valueThreshold"]["lowerBound"])
                    change = threshold.get("changeThreshold", {})
                    if "absolute" in change:
                        entry["max_drop"] = abs(float(change["absolute"]))
    return found


def thresholds(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """The blessing thresholds on the overall slice (slice_thresholds' "overall")."""
    return slice_thresholds(evaluation_uri).get("overall", {})


def select_slices(metrics: dict[str, dict[str, float]], wanted: list[str] | None) -> dict[str, dict[str, float]]:
    """The slices named by `wanted`: "overall", a feature (all its slices) or FEATURE=VALUE.
    A name that matches nothing is an error naming the slices there are."""
    if not wanted:
        return metrics

    def matches(name: str, want: str) -> bool:
        return name == want or ("=" not in want and any(part.split("=", 1)[0] == want for part in name.split(", ")))

    unknown = [w for w in wanted if not any(matches(name, w) for name in metrics)]
    if unknown and metrics:
        features = sorted({part.split("=", 1)[0] for name in metrics for part in name.split(", ") if "=" in part})
        raise ValueError(f"--slice {unknown[0]!r}: no such slice (overall, or one of: {', '.join(features)})")
    return {name: values for name, values in metrics.items() if any(matches(name, w) for w in wanted)}
