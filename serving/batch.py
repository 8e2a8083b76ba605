"""Batch predictions with Apache Beam: RunInference with a TensorFlow model handler.

CSV (with a header) or TFRecord files of tf.Example in; out go CSV files of the input's key
columns plus the predicted probability, and JSON lines of the rows that could not be parsed,
each with the reason (dead letters). Locally it runs on the DirectRunner; pass Dataflow
options (--runner=DataflowRunner --project ... --region ... --temp_location gs://...) to
score data of any size.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from modules import features as F
from modules.trainer import PREDICTION_KEY, SERVING_RAW_SIGNATURE

DEAD_LETTER = "dead_letter"
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


def _input_dtypes(model_dir: str) -> dict[str, tf.DType]:
    fn = tf.saved_model.load(model_dir).signatures[SERVING_RAW_SIGNATURE]
    return {name: spec.dtype for name, spec in fn.structured_input_signature[1].items()}


def _parse_value(name: str, text: str, dtype: tf.DType):
    if text == "":
        return None
    if dtype == tf.string:
        return text
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name}: not a finite number: {text!r}")
    if dtype.is_integer:
        if value != int(value):
            raise ValueError(f"{name}: not an integer: {text!r}")
        return int(value)
    return value


class ParseCsv(beam.DoFn):
    """CSV line -> (keys, features) on the main output, or a dead letter with the reason."""

    def __init__(self, header: list[str], dtypes: dict[str, tf.DType], key_columns: Sequence[str]):
        self.header, self.dtypes, self.key_columns = header, dtypes, list(key_columns)

    def process(self, line: str) -> Iterable[Any]:
        try:
            (values,) = list(csv.reader([line]))
        except (csv.Error, ValueError) as e:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, {"input": line, "reason": f"unreadable CSV: {e}"})
            return
        if values == self.header:
            return  # the header line of this or another input file
        if len(values) != len(self.header):
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER, {"input": line, "reason": f"expected {len(self.header)} columns, got {len(values)}"}
            )
            return
        row = dict(zip(self.header, values))
        try:
            features = {name: _parse_value(name, row[name], dtype) for name, dtype in self.dtypes.items()}
        except ValueError as e:
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, {"input": line, "reason": str(e)})
            return
        yield [row[k] for k in self.key_columns], features


class ParseExample(beam.DoFn):
    """Serialized tf.Example -> (keys, features), or a dead letter with the reason."""

    def __init__(self, dtypes: dict[str, tf.DType], key_columns: Sequence[str]):
        self.dtypes, self.key_columns = dtypes, list(key_columns)

    def process(self, record: bytes) -> Iterable[Any]:
        try:
            example = tf.train.Example.FromString(record)
        except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError subclasses
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, {"input": record[:200].hex(), "reason": f"not a tf.Example: {e}"})
            return
        feature = example.features.feature

        def value(name):
            if name not in feature:
                return None
            f = feature[name]
            values = f.bytes_list.value or f.float_list.value or f.int64_list.value
            if not values:
                return None
            v = values[0]
            return v.decode() if isinstance(v, bytes) else v

        features = {}
        for name, dtype in self.dtypes.items():
            v = value(name)
            if v is not None and (dtype == tf.string) != isinstance(v, str):
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, {"input": str(example)[:500], "reason": f"{name}: wrong type"})
                return
            features[name] = v
        yield [value(k) for k in self.key_columns], features


def _columns(batch: Sequence[dict[str, Any]], dtypes: dict[str, tf.DType]) -> dict[str, tf.Tensor]:
    out = {}
    for name, dtype in dtypes.items():
        values = [row[name] for row in batch]
        if dtype == tf.string:
            out[name] = tf.constant([F.MISSING_STRING if v is None else v for v in values], dtype)
        elif dtype.is_floating:
            out[name] = tf.constant(np.array([math.nan if v is None else v for v in values], dtype.as_numpy_dtype))
        else:
            out[name] = tf.constant(np.array([F.MISSING_INT if v is None else v for v in values], dtype.as_numpy_dtype))
    return out


class RawFeatureModelHandler(ModelHandler):
    """A TensorFlow model handler for RunInference: loads the pushed SavedModel and scores
    batches of raw-feature dicts through its `serving_raw` signature.

    Beam's own TFModelHandlerTensor cannot be used with this pinned set: it imports
    tensorflow_hub, whose version TFX 1.16 requires (<0.16) imports tf.estimator, which
    TF 2.16 no longer has. It would also load the model as a Keras model, and this export
    is a tf.Module with signatures.
    """

    def __init__(self, model_dir: str, min_batch_size: int = 64, max_batch_size: int = 2048):
        self.model_dir = model_dir
        self._batching = {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size}

    def load_model(self):
        return tf.saved_model.load(self.model_dir)

    def run_inference(self, batch, model, inference_args=None) -> Iterable[PredictionResult]:
        fn = model.signatures[SERVING_RAW_SIGNATURE]
        dtypes = {name: spec.dtype for name, spec in fn.structured_input_signature[1].items()}
        probabilities = fn(**_columns(batch, dtypes))[PREDICTION_KEY].numpy()
        return [PredictionResult(row, float(p), self.model_dir) for row, p in zip(batch, probabilities)]

    def batch_elements_kwargs(self):
        return self._batching

    def get_metrics_namespace(self) -> str:
        return "BeamML_TF_RawFeatures"


def _to_csv(keys: list, probability: float) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([*("" if k is None else k for k in keys), f"{probability:.6f}"])
    return out.getvalue()


def predict(
    model_dir: str,
    input_pattern: str,
    output_dir: str,
    key_columns: Sequence[str] | None = None,
    input_format: str | None = None,
    batch_size: int = 2048,
    beam_args: Sequence[str] = DEFAULT_BEAM_ARGS,
) -> dict[str, str]:
    """Scores `input_pattern` with the model in `model_dir`; returns the output file prefixes."""
    dtypes = _input_dtypes(model_dir)
    files = tf.io.gfile.glob(input_pattern)
    if not files:
        raise FileNotFoundError(f"no input files match {input_pattern}")
    input_format = input_format or ("tfrecord" if files[0].endswith((".tfrecord", ".gz")) else "csv")
    if input_format == "csv":
        with tf.io.gfile.GFile(files[0]) as f:
            header = next(csv.reader([f.readline()]))
        missing = sorted(set(dtypes) - set(header))
        if missing:
            raise ValueError(f"input has no column {missing[0]!r} (the model reads: {', '.join(dtypes)})")
        key_columns = list(key_columns) if key_columns else [c for c in header if c not in F.LABEL_SOURCE_KEYS]
        unknown = sorted(set(key_columns) - set(header))
        if unknown:
            raise ValueError(f"--key-columns: no column {unknown[0]!r} in the input")
    else:
        key_columns = list(key_columns or dtypes)
    os.makedirs(output_dir, exist_ok=True) if "://" not in output_dir else None
    predictions_prefix = os.path.join(output_dir, "predictions")
    dead_prefix = os.path.join(output_dir, DEAD_LETTER)
    handler = RawFeatureModelHandler(model_dir, min_batch_size=min(64, batch_size), max_batch_size=batch_size)

    with beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
        if input_format == "csv":
            lines = p | "Read" >> beam.io.ReadFromText(input_pattern)
            parsed = lines | "Parse" >> beam.ParDo(ParseCsv(header, dtypes, key_columns)).with_outputs(DEAD_LETTER, main="rows")
        else:
            records = p | "Read" >> beam.io.ReadFromTFRecord(input_pattern)
            parsed = records | "Parse" >> beam.ParDo(ParseExample(dtypes, key_columns)).with_outputs(DEAD_LETTER, main="rows")
        keyed = parsed.rows | "Key" >> beam.Map(lambda kf: (json.dumps(kf[0]), kf[1]))

        scored = keyed | "RunInference" >> RunInference(KeyedModelHandler(handler))
        _ = (
            scored
            | "Format" >> beam.MapTuple(lambda keys, result: _to_csv(json.loads(keys), result.inference))
            | "WritePredictions" >> beam.io.WriteToText(predictions_prefix, file_name_suffix=".csv",
                                                        header=",".join([*key_columns, "probability"]))
        )
        _ = (
            parsed[DEAD_LETTER]
            | "DeadLetterJson" >> beam.Map(json.dumps)
            | "WriteDeadLetters" >> beam.io.WriteToText(dead_prefix, file_name_suffix=".jsonl")
        )
    return {"predictions": predictions_prefix + "*.csv", "dead_letters": dead_prefix + "*.jsonl"}
