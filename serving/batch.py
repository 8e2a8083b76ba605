"""Batch predictions with Apache Beam: RunInference with a TensorFlow model handler.

CSV (with a header) or TFRecord files of tf.Example in; out go CSV files of the input's key
columns plus the predicted probability, and JSON lines of the rows that could not be parsed,
each with the reason (dead letters). Locally it runs on the DirectRunner; pass Dataflow
options (--runner=DataflowRunner --project ... --region ... --temp_location gs://...) to
score data of any size.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gc
import io
import json
import math
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any

import apache_beam as beam
import tensorflow as tf
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from modules import features as F
from modules.contract import PREDICTION_KEY, SERVING_RAW_SIGNATURE
from serving.model_store import dense_columns, input_dtypes

DEAD_LETTER = "dead_letter"
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


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
    if not dtype.min <= value <= dtype.max:
        # Outside the tensor type, it would fail the whole batch's model call.
        raise ValueError(f"{name}: out of the {dtype.name} range: {text!r}")
    if dtype.is_integer:
        if value != int(value):
            raise ValueError(f"{name}: not an integer: {text!r}")
        return int(value)
    return value


@dataclasses.dataclass
class RowBatch:
    """Parsed rows, column-wise: what one model call scores. Beam moves batches, not rows:
    per-element overhead, not the model, bounds a row-per-element pipeline's speed."""

    keys: list[list[Any]]
    features: dict[str, list[Any]]

    def __len__(self) -> int:
        return len(self.keys)


class ParseCsvBatch(beam.DoFn):
    """A batch of CSV lines -> one RowBatch on the main output, and a dead letter (with the
    reason) for each line that cannot be parsed."""

    def __init__(self, header: list[str], dtypes: dict[str, tf.DType], key_columns: Sequence[str]):
        self.header, self.dtypes, self.key_columns = header, dtypes, list(key_columns)

    def process(self, lines: list[str]) -> Iterable[Any]:
        index = {name: i for i, name in enumerate(self.header)}
        features = [(name, index[name], dtype) for name, dtype in self.dtypes.items()]
        key_index = [index[k] for k in self.key_columns]
        width = len(self.header)
        batch = RowBatch([], {name: [] for name in self.dtypes})
        for line in lines:
            try:
                values = line.split(",") if '"' not in line else next(csv.reader([line]))
            except (csv.Error, StopIteration) as e:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, {"input": line, "reason": f"unreadable CSV: {e}"})
                continue
            if values == self.header:
                continue  # the header line of this or another input file
            if len(values) != width:
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTER, {"input": line, "reason": f"expected {width} columns, got {len(values)}"}
                )
                continue
            try:
                parsed = [(name, _parse_value(name, values[i], dtype)) for name, i, dtype in features]
            except ValueError as e:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, {"input": line, "reason": str(e)})
                continue
            for name, value in parsed:
                batch.features[name].append(value)
            batch.keys.append([values[i] for i in key_index])
        if len(batch):
            yield batch


def example_value(feature, name: str):
    """The first value of a tf.Example feature, or None when absent or empty."""
    f = feature[name] if name in feature else None
    values = (f.bytes_list.value or f.float_list.value or f.int64_list.value) if f is not None else None
    if not values:
        return None
    return values[0].decode() if isinstance(values[0], bytes) else values[0]


class ParseExampleBatch(beam.DoFn):
    """A batch of serialized tf.Examples -> one RowBatch, and dead letters with reasons."""

    def __init__(self, dtypes: dict[str, tf.DType], key_columns: Sequence[str]):
        self.dtypes, self.key_columns = dtypes, list(key_columns)

    def process(self, records: list[bytes]) -> Iterable[Any]:
        batch = RowBatch([], {name: [] for name in self.dtypes})
        for record in records:
            try:
                feature = tf.train.Example.FromString(record).features.feature
            except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError subclasses
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, {"input": record[:200].hex(), "reason": f"not a tf.Example: {e}"})
                continue
            row = {name: example_value(feature, name) for name in self.dtypes}
            if all(v is None for v in row.values()):
                yield beam.pvalue.TaggedOutput(
                    DEAD_LETTER, {"input": record[:200].hex(), "reason": "none of the model's features"}
                )
                continue
            wrong = [n for n, v in row.items() if v is not None and (self.dtypes[n] == tf.string) != isinstance(v, str)]
            if wrong:
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, {"input": record[:200].hex(), "reason": f"{wrong[0]}: wrong type"})
                continue
            for name, v in row.items():
                batch.features[name].append(v)
            batch.keys.append([example_value(feature, k) for k in self.key_columns])
        if len(batch):
            yield batch


def _columns(batches: Sequence[RowBatch], dtypes: dict[str, tf.DType]) -> dict[str, tf.Tensor]:
    """RowBatches -> one dense tensor per model input."""
    values = {name: [v for b in batches for v in b.features[name]] for name in dtypes}
    return {name: tf.constant(column) for name, column in dense_columns(values, dtypes).items()}


class RawFeatureModelHandler(ModelHandler):
    """A TensorFlow model handler for RunInference: loads the pushed SavedModel and scores
    RowBatches of raw features through its `serving_raw` signature (one model call for the
    RowBatches RunInference groups together).

    Beam's own TFModelHandlerTensor cannot be used with this pinned set: it imports
    tensorflow_hub, whose version TFX 1.16 requires (<0.16) imports tf.estimator, which
    TF 2.16 no longer has. It would also load the model as a Keras model, and this export
    is a tf.Module with signatures.
    """

    def __init__(self, model_dir: str, max_row_batches: int = 4):
        self.model_dir = model_dir
        self._batching = {"min_batch_size": 1, "max_batch_size": max_row_batches}

    def load_model(self):
        return tf.saved_model.load(self.model_dir)

    def run_inference(self, batch, model, inference_args=None) -> Iterable[PredictionResult]:
        fn = model.signatures[SERVING_RAW_SIGNATURE]
        dtypes = input_dtypes(fn)
        probabilities = fn(**_columns(batch, dtypes))[PREDICTION_KEY].numpy()
        results, start = [], 0
        for rows in batch:
            results.append(PredictionResult(rows, probabilities[start : start + len(rows)], self.model_dir))
            start += len(rows)
        return results

    def batch_elements_kwargs(self):
        return self._batching

    def get_metrics_namespace(self) -> str:
        return "BeamML_TF_RawFeatures"


class ProgressBar:
    """Rows scored so far, shown on `out` (stderr) every `every` seconds as a bar against the
    estimated total. Counts in this process: with the default in-memory DirectRunner."""

    _lock = threading.Lock()
    scored = 0

    def __init__(self, total_estimate: int, out: IO[str], every: float = 2.0):
        self.total, self.out, self.every = max(total_estimate, 1), out, every
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="predict-progress", daemon=True)
        ProgressBar.scored = 0

    @classmethod
    def count(cls, result: PredictionResult) -> PredictionResult:
        with cls._lock:
            cls.scored += len(result.example.keys)
        return result

    def line(self) -> str:
        done = ProgressBar.scored
        share = min(done / self.total, 1.0)
        elapsed = time.monotonic() - self.start
        eta = f", ~{elapsed / share - elapsed:.0f} s left" if 0.02 < share < 1 else ""
        bar = "#" * int(share * 30) + "." * (30 - int(share * 30))
        return f"predict [{bar}] {share:4.0%} {done:,} of ~{self.total:,} rows, {elapsed:.0f} s{eta}"

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            print(self.line(), file=self.out, flush=True)

    def __enter__(self) -> ProgressBar:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        print(self.line(), file=self.out, flush=True)


def estimate_rows(files: Sequence[str], input_format: str) -> int:
    """Rows in the input, estimated from the first 64 KB of the first file and the sizes."""
    sizes = sum(tf.io.gfile.stat(f).length for f in files)
    with tf.io.gfile.GFile(files[0], "rb") as f:
        head = f.read(65536)
    if input_format == "csv":
        lines = head.count(b"\n") or 1
        return max(int(sizes / (len(head) / lines)) - len(files), 1)
    return max(sizes // 200, 1)  # tf.Examples of this width: ~200 bytes each


def _to_csv(result: PredictionResult) -> str:
    """A scored RowBatch as one multi-line CSV text (WriteToText adds the last newline)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for keys, p in zip(result.example.keys, result.inference):
        writer.writerow([*("" if k is None else k for k in keys), f"{p:.6f}"])
    return out.getvalue()[:-1]


def _release_shared_models() -> None:
    """Frees the model RunInference keeps in Beam's process-wide cache (its last entry is held
    alive on purpose) while TensorFlow can still tear it down; left to interpreter exit, every
    tf.function of the model prints a TypeError from AtomicFunction.__del__."""
    from apache_beam.utils import shared

    shared._shared_map._keepalive = (None, None)
    gc.collect()


def predict(
    model_dir: str,
    input_pattern: str,
    output_dir: str,
    key_columns: Sequence[str] | None = None,
    input_format: str | None = None,
    batch_size: int = 2048,
    beam_args: Sequence[str] = DEFAULT_BEAM_ARGS,
    progress: IO[str] | None = None,
) -> dict[str, str]:
    """Scores `input_pattern` with the model in `model_dir`; returns the output file prefixes.
    `progress`: where to show a progress bar (rows scored against the estimated total)."""
    dtypes = input_dtypes(tf.saved_model.load(model_dir).signatures[SERVING_RAW_SIGNATURE])
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
    handler = RawFeatureModelHandler(model_dir)

    bar = ProgressBar(estimate_rows(files, input_format), progress) if progress is not None else contextlib.nullcontext()
    with bar, beam.Pipeline(options=PipelineOptions(list(beam_args))) as p:
        if input_format == "csv":
            records = p | "Read" >> beam.io.ReadFromText(input_pattern)
            parse = ParseCsvBatch(header, dtypes, key_columns)
        else:
            records = p | "Read" >> beam.io.ReadFromTFRecord(input_pattern)
            parse = ParseExampleBatch(dtypes, key_columns)
        parsed = (
            records
            | "Batch" >> beam.BatchElements(min_batch_size=batch_size // 4, max_batch_size=batch_size)
            | "Parse" >> beam.ParDo(parse).with_outputs(DEAD_LETTER, main="rows")
        )
        _ = (
            parsed.rows
            | "RunInference" >> RunInference(handler)
            | "Count" >> beam.Map(ProgressBar.count)
            | "Format" >> beam.Map(_to_csv)
            | "WritePredictions"
            >> beam.io.WriteToText(predictions_prefix, file_name_suffix=".csv", header=",".join([*key_columns, "probability"]))
        )
        _ = (
            parsed[DEAD_LETTER]
            | "DeadLetterJson" >> beam.Map(json.dumps)
            | "WriteDeadLetters" >> beam.io.WriteToText(dead_prefix, file_name_suffix=".jsonl")
        )
    _release_shared_models()
    return {"predictions": predictions_prefix + "*.csv", "dead_letters": dead_prefix + "*.jsonl"}
