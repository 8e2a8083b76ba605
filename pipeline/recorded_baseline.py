"""The evaluation baseline's figures from its own recorded evaluation, when they cannot differ.

Against a baseline, TFX's Evaluator makes TFMA evaluate two models in one pass, and TFMA's
per-example metric work is per model: the Evaluator took 2.2x its time without a baseline
(bench/RESULTS.md). But the baseline was itself evaluated when it was the candidate, and its
metrics depend on nothing but the model, the eval data and what the eval config asks to
compute (metrics, slices, model spec; not the thresholds, which only judge). When all of those
are the same (a re-run on an unchanged span: other hyperparameters, other training code), the
recorded figures are the ones TFMA would compute again. Then TFMA evaluates the candidate
alone and `complete` turns its output into what TFMA writes for two models: both models'
metrics per slice, the candidate's differences, the validation with the change thresholds
(TFMA's own validator and merge) and the eval config with the baseline's model spec.
`tests/test_model_validation.py` compares the result with a two-model TFMA run.

`evaluation_key` is what the figures depend on besides the model; the Evaluator records it on
every evaluation (lineage.EVALUATED_ON) and reuses a baseline's evaluation only with an equal
key, on metrics that are plain numbers.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import tensorflow as tf
import tensorflow_model_analysis as tfma
from google.protobuf import json_format
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.proto import config_pb2, metrics_for_slice_pb2
from tensorflow_model_analysis.slicer import slicer_lib
from tensorflow_model_analysis.writers import eval_config_writer
from tensorflow_model_analysis.writers import metrics_plots_and_validations_writer as writer
from tfx.utils import path_utils

METRICS_FILE = "metrics-00000-of-00001.tfrecord"  # TFMA's names, one shard each
VALIDATIONS_FILE = "validations.tfrecord"
EVAL_CONFIG_FILE = "eval_config.json"

Metrics = dict[tuple, dict[metric_types.MetricKey, float]]  # slice key -> metric -> value


def evaluation_key(eval_config: tfma.EvalConfig, examples_uris: list[str], splits: list[str]) -> str:
    """What a model's evaluated figures depend on besides the model: the eval data (artifact
    URIs are written once), the splits, TFMA's version and the config without its thresholds
    and the baseline's model spec and model names."""
    config = tfma.EvalConfig()
    config.CopyFrom(eval_config)
    candidates = [spec for spec in config.model_specs if not spec.is_baseline]
    del config.model_specs[:]
    config.model_specs.extend(candidates)
    for spec in config.model_specs:
        spec.ClearField("name")
    for spec in config.metrics_specs:
        for field in ("thresholds", "per_slice_thresholds", "cross_slice_thresholds", "model_names"):
            spec.ClearField(field)
        for metric in spec.metrics:
            for field in ("threshold", "per_slice_thresholds", "cross_slice_thresholds"):
                metric.ClearField(field)
    digest = hashlib.sha256()
    digest.update(json.dumps([sorted(u.rstrip("/") for u in examples_uris), sorted(splits), tfma.__version__]).encode())
    digest.update(config.SerializeToString(deterministic=True))
    return digest.hexdigest()


def _load(evaluation_uri: str) -> Metrics:
    """Slice key -> metric key (model name "") -> value; ValueError for a metric that is not a
    plain number (a plot-like value: not reused)."""
    result: Metrics = {}
    for path in tf.io.gfile.glob(os.path.join(evaluation_uri, "metrics*")):
        for record in tf.compat.v1.io.tf_record_iterator(path):
            proto = metrics_for_slice_pb2.MetricsForSlice.FromString(record)
            if proto.HasField("cross_slice_key"):
                raise ValueError(f"{evaluation_uri}: cross-slice metrics are not reused")
            values = {}
            for kv in proto.metric_keys_and_values:
                key = metric_types.MetricKey.from_proto(kv.key)
                if key.is_diff or key.model_name not in ("", tfma.CANDIDATE_KEY):
                    continue  # that run's baseline and differences
                if kv.value.WhichOneof("type") != "double_value":
                    raise ValueError(f"{evaluation_uri}: {key.name} is not a plain number")
                values[key._replace(model_name="")] = kv.value.double_value.value
            result[slicer_lib.deserialize_slice_key(proto.slice_key)] = values
    if not result:
        raise ValueError(f"{evaluation_uri}: no metrics")
    return result


def reusable(evaluation_uri: str) -> bool:
    """Whether a recorded evaluation's figures can stand in for a baseline's."""
    try:
        _load(evaluation_uri)
    except (ValueError, OSError, tf.errors.OpError):
        return False
    return True


def _merged(candidate: dict, baseline: dict) -> dict:
    """One slice's metrics as TFMA keys them for two models: the candidate's and the baseline's
    under their model names, and the candidate's difference where the baseline has the metric."""
    merged, diffs = {}, {}
    for key, value in candidate.items():
        merged[key._replace(model_name=tfma.CANDIDATE_KEY)] = value
        if key in baseline:
            merged[key._replace(model_name=tfma.BASELINE_KEY)] = baseline[key]
            diffs[key._replace(model_name=tfma.CANDIDATE_KEY, is_diff=True)] = value - baseline[key]
    return {**merged, **diffs}  # TFMA's order (the validation lists failures in it)


def canonical(result: tfma.ValidationResult) -> tfma.ValidationResult:
    """A validation result with its per-slice entries in a fixed order, for comparing: TFMA
    merges the slices' results in the order Beam hands them over, which varies."""
    out = tfma.ValidationResult()
    out.CopyFrom(result)
    for repeated in (out.metric_validations_per_slice, out.validation_details.slicing_details):
        items = sorted(repeated, key=lambda m: m.SerializeToString(deterministic=True))
        copies = [type(m)() for m in items]
        for copy, item in zip(copies, items):
            copy.CopyFrom(item)
        del repeated[:]
        repeated.extend(copies)
    return out


def _write_records(path: str, records: list[bytes]) -> None:
    with tf.io.TFRecordWriter(path + ".tmp") as w:
        for record in records:
            w.write(record)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def complete(
    evaluation_uri: str, recorded_uri: str, eval_config: tfma.EvalConfig, model_locations: dict[str, str]
) -> tfma.ValidationResult:
    """Turns TFMA's evaluation of the candidate alone (in `evaluation_uri`) into the two-model
    evaluation, the baseline's figures read from `recorded_uri`. `eval_config` is the config
    with the baseline, as TFX's Evaluator gives it to TFMA. Returns the validation result."""
    candidate, baseline = _load(evaluation_uri), _load(recorded_uri)
    merged = [(slice_key, _merged(values, baseline.get(slice_key, {}))) for slice_key, values in candidate.items()]

    records = [writer.convert_slice_metrics_to_proto(item, add_metrics_callbacks=None).SerializeToString() for item in merged]
    for stale in tf.io.gfile.glob(os.path.join(evaluation_uri, "metrics*")):
        tf.io.gfile.remove(stale)
    _write_records(os.path.join(evaluation_uri, METRICS_FILE), records)

    combine = writer.CombineValidations(eval_config, rubber_stamp=False)
    accumulator: Any = combine.create_accumulator()
    for item in merged:
        accumulator = combine.add_input(accumulator, metrics_validator.validate_metrics(item, eval_config))
    result = combine.extract_output(accumulator)
    _write_records(os.path.join(evaluation_uri, VALIDATIONS_FILE), [result.SerializeToString()])

    _, data_location, file_format, _ = eval_config_writer.load_eval_run(evaluation_uri)
    run = config_pb2.EvalRun(
        eval_config=eval_config,
        version=tfma.__version__,
        data_location=data_location,
        file_format=file_format,
        model_locations=model_locations,
    )
    with tf.io.gfile.GFile(os.path.join(evaluation_uri, EVAL_CONFIG_FILE), "w") as f:
        f.write(json_format.MessageToJson(run))
    return result


def complete_for_models(
    evaluation_uri: str, recorded_uri: str, eval_config: tfma.EvalConfig, candidate_uri: str, baseline_uri: str
) -> tfma.ValidationResult:
    """`complete` for TFX Model artifacts' URIs and the component's eval config (one model spec,
    as written in the pipeline): the config and model locations as TFX's Evaluator gives them
    to TFMA for two models."""
    with_baseline = tfma.utils.update_eval_config_with_defaults(eval_config, has_baseline=True, rubber_stamp=True)
    locations = {
        tfma.CANDIDATE_KEY: path_utils.serving_model_path(candidate_uri),
        tfma.BASELINE_KEY: path_utils.serving_model_path(baseline_uri),
    }
    return complete(evaluation_uri, recorded_uri, with_baseline, locations)
