"""TFMA evaluation artifacts as plain numbers: metric values per slice."""

from __future__ import annotations


def overall_metrics(evaluation_uri: str) -> dict[str, float]:
    """The overall slice's metrics from a TFMA evaluation artifact."""
    return sliced_metrics(evaluation_uri).get("overall", {})


def sliced_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """Slice name ("overall", "payment_type=Cash", ...) -> metric name -> value.

    A model evaluated against a baseline also has the baseline's metrics in the artifact; only
    the candidate's are returned.
    """
    import tensorflow_model_analysis as tfma

    result = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        key = tfma.slicer.deserialize_slice_key(metrics.slice_key)
        name = ", ".join(f"{k}={v.decode() if isinstance(v, bytes) else v}" for k, v in key) or "overall"
        values = {}
        for kv in metrics.metric_keys_and_values:
            if kv.key.model_name and kv.key.model_name != "candidate":
                continue  # the baseline's copy
            if kv.key.is_diff:
                continue
            if kv.value.HasField("double_value"):
                values[kv.key.name] = kv.value.double_value.value
        result[name] = values
    return result
