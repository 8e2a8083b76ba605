"""Batch predictions with Apache Beam: RunInference with a TensorFlow model handler.

CSV (with a header) or TFRecord files of tf.Example in; out go CSV files of the input's key
columns plus the predicted probability, and JSON lines of the rows that were not scored, each
with its file, line and reason (dead letters). Locally it runs on the DirectRunner; pass
Dataflow options (--runner=DataflowRunner --project ... --region ... --temp_location gs://...)
to score data of any size.

Every CSV file is read with its own header: files whose columns are in another order are
scored correctly, and a file whose columns are not the schema's (a model input missing, a
column the schema does not know) is refused before anything runs, naming the file. Rows are
checked by the one validator REST and the Vertex endpoint use (modules/contract.py): a row
the server refuses is a dead letter here, with the same message. Parsing and checking are
column-wise (numpy, pandas), a chunk of lines at a time. Per file, rows in = rows scored +
dead letters, counted and returned.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gc
import io
import json
import os
import threading
import time
from collections.abc import Iterable, Sequence
from typing import IO, Any

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from modules import features as F
from modules.contract import PREDICTION_KEY, SERVING_RAW_SIGNATURE, STRING, Column, RowContract
from serving.model_store import Rows, dense_rows, schema_domains

DEAD_LETTER = "dead_letter"
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
METRICS = "predict"
CHUNK_LINES = 8192


class InputError(ValueError):
    """The input cannot be scored as given (no files, a file's columns); nothing was written."""


def signature_dtypes(model_dir: str) -> dict[str, tf.DType]:
    """The raw-feature signature's inputs, read from saved_model.pb without loading the model."""
    from tensorflow.core.protobuf import saved_model_pb2

    with tf.io.gfile.GFile(os.path.join(model_dir, "saved_model.pb"), "rb") as f:
        saved = saved_model_pb2.SavedModel.FromString(f.read())
    signature = saved.meta_graphs[0].signature_def[SERVING_RAW_SIGNATURE]
    return {name: tf.as_dtype(info.dtype) for name, info in signature.inputs.items()}


@dataclasses.dataclass
class RowBatch:
    """Checked rows, column-wise: what one model call scores, with their key columns. Beam
    moves batches, not rows: per-element overhead, not the model, bounds a row-per-element
    pipeline's speed."""

    keys: list[str]  # each row's key columns, already a CSV line's start (see csv_key)
    rows: Rows
    file: str

    def __len__(self) -> int:
        return len(self.keys)


def csv_key(values: Sequence[Any]) -> str:
    """Key column values as the start of an output CSV line (quoted only where CSV needs it).
    Rendered once while parsing: a string per row moves between Beam stages far cheaper than
    a list of them."""
    texts = ["" if v is None else str(v) for v in values]
    if any(("," in t or '"' in t or "\n" in t or "\r" in t) for t in texts):
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(texts)
        return out.getvalue()
    return ",".join(texts)


def _dead(file: str, line: int | None, reason: str, text: str) -> Any:
    return beam.pvalue.TaggedOutput(DEAD_LETTER, {"file": file, "line": line, "reason": reason, "input": text[:500]})


def _split_lines(
    lines: Sequence[str], first_line: int, width: int, file: str
) -> tuple[dict[int, Any], list[int], list[str], list[Any]]:
    """A chunk's lines -> (column index -> its cells, each kept line's number and text, dead
    letters). Plain chunks (no quotes, every line `width` fields) go through pandas' C
    parser; any other chunk line by line through the csv module, where a ragged or unreadable
    line becomes a dead letter."""
    import pandas as pd

    kept = [(first_line + offset, line.rstrip("\r\n")) for offset, line in enumerate(lines)]
    kept = [(n, t) for n, t in kept if t]
    if not kept:
        return {}, [], [], []
    numbers, texts = [n for n, _ in kept], [t for _, t in kept]
    if not any('"' in t or t.count(",") != width - 1 for t in texts):
        frame = pd.read_csv(
            io.StringIO("\n".join(texts)), header=None, names=range(width), dtype=str, na_filter=False, engine="c"
        )
        return {i: frame[i].to_numpy(object) for i in range(width)}, numbers, texts, []
    fields, good_numbers, good_texts, dead = [], [], [], []
    for n, line in kept:
        try:
            values = line.split(",") if '"' not in line else next(csv.reader([line]))
        except (csv.Error, StopIteration) as e:
            dead.append(_dead(file, n, f"unreadable CSV: {e}", line))
            continue
        if len(values) != width:
            dead.append(_dead(file, n, f"expected {width} columns, got {len(values)}", line))
            continue
        fields.append(values)
        good_numbers.append(n)
        good_texts.append(line)
    if not fields:
        return {}, [], [], dead
    return {i: np.array(c, dtype=object) for i, c in enumerate(zip(*fields))}, good_numbers, good_texts, dead


# Beyond this, pandas' C parser may round a decimal differently from Python's float (the
# integer 2**63 read as 9.223372036854778e18): such chunks are read as text.
_EXACT = 2.0**53


def _plain_numbers(texts: Sequence[str], header: list[str], contract: RowContract) -> dict[str, np.ndarray] | None:
    """The numeric features of a chunk of plain lines, parsed by pandas' C parser straight to
    float64 (NaN where a cell is empty): a third of the time of text then pd.to_numeric. None
    when any cell is not a plain number (text, "nan", a space) or beyond 2**53: the chunk is
    then read as text, where each such cell gets its row's message."""
    import pandas as pd

    numeric = [name for name, kind in contract.kinds.items() if kind != STRING]
    index = {name: i for i, name in enumerate(header)}
    try:
        frame = pd.read_csv(
            io.StringIO("\n".join(texts)),
            header=None,
            names=range(len(header)),
            usecols=[index[n] for n in numeric],
            dtype={index[n]: "float64" for n in numeric},
            keep_default_na=False,
            na_values=[""],
            engine="c",
        )
    except ValueError:
        return None
    if len(frame) != len(texts):
        return None
    columns = {name: frame[index[name]].to_numpy(np.float64) for name in numeric}
    with np.errstate(invalid="ignore"):
        if any((np.abs(x) >= _EXACT).any() for x in columns.values()):
            return None
    return columns


def parse_csv_lines(
    lines: Sequence[str],
    first_line: int,
    header: list[str],
    contract: RowContract,
    dtypes: dict[str, tf.DType],
    key_columns: Sequence[str],
    file: str,
) -> tuple[RowBatch | None, list[Any]]:
    """A chunk of a file's data lines -> (checked rows, dead letters). `first_line` is the
    1-based line number of lines[0] in the file."""
    import pandas as pd

    cells, numbers, texts, dead = _split_lines(lines, first_line, len(header), file)
    if not numbers:
        return None, dead
    index = {name: i for i, name in enumerate(header)}
    parsed = _plain_numbers(texts, header, contract)
    columns = {
        name: Column.from_floats(parsed[name])
        if parsed is not None and name in parsed
        else Column.from_text(pd.Series(cells[index[name]], dtype=object), kind)
        for name, kind in contract.kinds.items()
    }
    problems = contract.check(columns)
    bad = [i for i, p in enumerate(problems) if p is not None]
    for i in bad:
        dead.append(_dead(file, numbers[i], str(problems[i]), texts[i]))
    keep = np.ones(len(numbers), bool)
    keep[bad] = False
    if not keep.any():
        return None, dead
    rows = dense_rows(columns, contract, dtypes)
    if bad:
        rows = Rows({k: v[keep] for k, v in rows.columns.items()})
    # The output's key columns, one CSV text per row. Where no line has quotes (no field then
    # needs them): the start of each line when the keys are the header's first columns (all
    # but the label, last in the bundled data), else joined column-wise; otherwise row by row
    # with the csv module's quoting.
    key_cells = [cells[index[k]][keep] for k in key_columns]
    quoted = any('"' in t for t in texts)
    if quoted and key_cells:
        keys = [csv_key(values) for values in zip(*key_cells)]
    elif key_columns and list(key_columns) == header[: len(key_columns)]:
        kept = [t for t, ok in zip(texts, keep) if ok]
        if len(key_columns) == len(header):
            keys = kept
        elif len(key_columns) == len(header) - 1:
            keys = [t[: t.rfind(",")] for t in kept]
        else:
            keys = [",".join(t.split(",", len(key_columns))[:-1]) for t in kept]
    elif key_cells:
        joined = key_cells[0]
        for column in key_cells[1:]:
            joined = joined + "," + column
        keys = list(joined)
    else:
        keys = [""] * int(keep.sum())
    return RowBatch(keys, rows, file), dead


class ReadCsvFile(beam.DoFn):
    """One CSV file -> RowBatches of its lines (read with the file's own header), and a dead
    letter for each line that is not scored; counts per file in Beam metrics."""

    def __init__(
        self, headers: dict[str, list[str]], contract: RowContract, dtypes: dict[str, tf.DType], key_columns, chunk=CHUNK_LINES
    ):
        self.headers, self.contract, self.dtypes, self.key_columns, self.chunk = (
            headers,
            contract,
            dtypes,
            list(key_columns),
            chunk,
        )

    def process(self, path: str) -> Iterable[Any]:
        header = self.headers[path]
        rows_in = Metrics.counter(METRICS, f"rows:{path}")
        dead_out = Metrics.counter(METRICS, f"dead:{path}")
        with FileSystems.open(path) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
            text.readline()  # this file's header
            line_number = 2
            while True:
                lines = text.readlines(self.chunk * 200) if self.chunk else text.readlines()
                if not lines:
                    break
                batch, dead = parse_csv_lines(lines, line_number, header, self.contract, self.dtypes, self.key_columns, path)
                rows_in.inc(sum(1 for line in lines if line.strip()))
                dead_out.inc(len(dead))
                yield from dead
                if batch is not None:
                    yield batch
                line_number += len(lines)


def example_value(feature, name: str):
    """The first value of a tf.Example feature, or None when absent or empty."""
    f = feature[name] if name in feature else None
    values = (f.bytes_list.value or f.float_list.value or f.int64_list.value) if f is not None else None
    if not values:
        return None
    return values[0].decode(errors="replace") if isinstance(values[0], bytes) else values[0]


class ParseExampleBatch(beam.DoFn):
    """A batch of serialized tf.Examples -> one RowBatch, and dead letters with reasons."""

    def __init__(self, contract: RowContract, dtypes: dict[str, tf.DType], key_columns: Sequence[str], file: str):
        self.contract, self.dtypes, self.key_columns, self.file = contract, dtypes, list(key_columns), file

    def process(self, records: list[bytes]) -> Iterable[Any]:
        rows_in = Metrics.counter(METRICS, f"rows:{self.file}")
        dead_out = Metrics.counter(METRICS, f"dead:{self.file}")
        rows_in.inc(len(records))
        parsed, keys, dead = [], [], []
        for record in records:
            try:
                feature = tf.train.Example.FromString(record).features.feature
            except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError subclasses
                dead.append(_dead(self.file, None, f"not a tf.Example: {e}", record[:200].hex()))
                continue
            row = {name: example_value(feature, name) for name in self.dtypes}
            if all(v is None for v in row.values()):
                dead.append(_dead(self.file, None, "none of the model's features", record[:200].hex()))
                continue
            parsed.append(row)
            keys.append(csv_key([example_value(feature, k) for k in self.key_columns]))
        batch = None
        if parsed:
            columns = {name: Column.from_json([r[name] for r in parsed], kind) for name, kind in self.contract.kinds.items()}
            problems = self.contract.check(columns)
            keep = np.array([p is None for p in problems])
            for i, p in enumerate(problems):
                if p is not None:
                    dead.append(_dead(self.file, None, p, json.dumps(parsed[i])))
            if keep.any():
                rows = dense_rows(columns, self.contract, self.dtypes)
                batch = RowBatch(
                    [k for k, ok in zip(keys, keep) if ok], Rows({k: v[keep] for k, v in rows.columns.items()}), self.file
                )
        dead_out.inc(len(dead))
        yield from dead
        if batch is not None:
            yield batch


class RawFeatureModelHandler(ModelHandler):
    """A TensorFlow model handler for RunInference: loads the pushed SavedModel and scores
    RowBatches of raw features through its `serving_raw` signature (one model call for the
    RowBatches RunInference groups together).

    Beam's own TFModelHandlerTensor cannot be used with this pinned set: it imports
    tensorflow_hub, whose version TFX 1.16 requires (<0.16) imports tf.estimator, which
    TF 2.16 no longer has. It would also load the model as a Keras model, and this export
    is a tf.Module with signatures.
    """

    def __init__(self, model_dir: str, max_row_batches: int = 2):
        self.model_dir = model_dir
        self._batching = {"min_batch_size": 1, "max_batch_size": max_row_batches}

    def load_model(self):
        return tf.saved_model.load(self.model_dir)

    def run_inference(self, batch, model, inference_args=None) -> Iterable[PredictionResult]:
        fn = model.signatures[SERVING_RAW_SIGNATURE]
        rows = Rows.concat([b.rows for b in batch])
        probabilities = fn(**{k: tf.constant(v) for k, v in rows.columns.items()})[PREDICTION_KEY].numpy()
        results, start = [], 0
        for b in batch:
            results.append(PredictionResult(b, probabilities[start : start + len(b)], self.model_dir))
            start += len(b)
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
            cls.scored += len(result.example)
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
    # Python floats format twice as fast as numpy scalars.
    return "\n".join([f"{key},{p:.6f}" for key, p in zip(result.example.keys, np.asarray(result.inference).tolist())])


def _release_shared_models() -> None:
    """Frees the model RunInference keeps in Beam's process-wide cache (its last entry is held
    alive on purpose) while TensorFlow can still tear it down; left to interpreter exit, every
    tf.function of the model prints a TypeError from AtomicFunction.__del__."""
    from apache_beam.utils import shared

    shared._shared_map._keepalive = (None, None)
    gc.collect()


def csv_headers(files: Sequence[str], contract: RowContract) -> dict[str, list[str]]:
    """Each file's header; InputError naming the first file whose columns are not the schema's
    (a model input missing, or a column the schema does not know)."""
    headers = {}
    for path in files:
        with tf.io.gfile.GFile(path) as f:
            first = f.readline().lstrip("\ufeff").rstrip("\r\n")
        header = next(csv.reader([first]), [])
        missing = contract.missing(header)
        unknown = contract.unknown(header)
        if missing or unknown:
            problem = f"no column {missing[0]!r}" if missing else f"a column the schema does not know: {unknown[0]!r}"
            raise InputError(f"{path}: {problem} (its header: {','.join(header)[:200]}); nothing was scored")
        headers[path] = header
    return headers


def predict(
    model_dir: str,
    input_pattern: str,
    output_dir: str,
    key_columns: Sequence[str] | None = None,
    input_format: str | None = None,
    beam_args: Sequence[str] | None = None,
    progress: IO[str] | None = None,
) -> dict[str, Any]:
    """Scores `input_pattern` with the model in `model_dir`. Returns the output file patterns
    and, per input file, rows read, scored and dead-lettered. `progress`: where to show a
    progress bar (rows scored against the estimated total).

    `beam_args` None: in this process, the pipeline's steps called one after the other (no
    runner's fixed cost: a second of a 150k-row file); otherwise a Beam pipeline with these
    options (e.g. Dataflow's, or DEFAULT_BEAM_ARGS). Both write the same files."""
    dtypes = signature_dtypes(model_dir)
    contract = RowContract.for_model(dtypes, schema_domains(model_dir))
    files = sorted(tf.io.gfile.glob(input_pattern))
    if not files:
        raise InputError(f"no input files match {input_pattern}")
    input_format = input_format or ("tfrecord" if files[0].endswith((".tfrecord", ".gz")) else "csv")
    headers: dict[str, list[str]] = {}
    if input_format == "csv":
        headers = csv_headers(files, contract)
        common = [c for c in headers[files[0]] if all(c in h for h in headers.values())]
        key_columns = list(key_columns) if key_columns else [c for c in common if c not in F.LABEL_SOURCE_KEYS]
        for path, header in headers.items():
            unknown = sorted(set(key_columns) - set(header))
            if unknown:
                raise InputError(f"--key-columns: no column {unknown[0]!r} in {path}")
    else:
        key_columns = list(key_columns or dtypes)
    tf.io.gfile.makedirs(output_dir)
    job = _Job(RawFeatureModelHandler(model_dir), files, input_format, headers, contract, dtypes, key_columns, output_dir)
    bar = ProgressBar(estimate_rows(files, input_format), progress) if progress is not None else contextlib.nullcontext()
    with bar:
        counts = _predict_in_process(job) if beam_args is None else _predict_with_beam(job, beam_args)
    per_file = {}
    for path in files:
        read, dead = counts.get(f"rows:{path}", 0), counts.get(f"dead:{path}", 0)
        per_file[path] = {"rows": read, "scored": read - dead, "dead_letters": dead}
    return {
        "predictions": job.predictions_prefix + "*.csv",
        "dead_letters": job.dead_prefix + "*.jsonl",
        "scored": sum(f["scored"] for f in per_file.values()),
        "dead": sum(f["dead_letters"] for f in per_file.values()),
        "files": per_file,
    }


@dataclasses.dataclass
class _Job:
    """What both drivers run: the model, the input files (with each CSV file's header), the
    row contract and where the outputs go."""

    handler: RawFeatureModelHandler
    files: Sequence[str]
    input_format: str
    headers: dict[str, list[str]]  # CSV only
    contract: RowContract
    dtypes: dict[str, tf.DType]
    key_columns: list[str]
    output_dir: str

    @property
    def predictions_prefix(self) -> str:
        return os.path.join(self.output_dir, "predictions")

    @property
    def dead_prefix(self) -> str:
        return os.path.join(self.output_dir, DEAD_LETTER)

    @property
    def header(self) -> str:
        return ",".join([*self.key_columns, "probability"])

    def read_csv(self) -> ReadCsvFile:
        return ReadCsvFile(self.headers, self.contract, self.dtypes, self.key_columns)

    def parse_examples(self, path: str) -> ParseExampleBatch:
        return ParseExampleBatch(self.contract, self.dtypes, self.key_columns, path)


def _batches(job: _Job) -> Iterable[tuple[str, Any]]:
    """(file, RowBatch or dead letter) for every file, in order: the Beam pipeline's read and
    parse steps, called in this process."""
    if job.input_format == "csv":
        read = job.read_csv()
        for path in job.files:
            for out in read.process(path):
                yield path, out
        return
    for path in job.files:
        parse = job.parse_examples(path)
        records: list[bytes] = []
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz") else None):
            records.append(record.numpy())
            if len(records) == CHUNK_LINES:
                yield from ((path, out) for out in parse.process(records))
                records = []
        if records:
            yield from ((path, out) for out in parse.process(records))


def _predict_in_process(job: _Job) -> dict[str, int]:
    """The pipeline's steps in this process, a chunk at a time; the files Beam's WriteToText
    would write (one shard each). Returns the counts the Beam pipeline's metrics hold.

    The model scores chunk n on a second thread while this one parses chunk n + 1: TensorFlow
    runs without the GIL, parsing needs it (on 2 cores, a third less time end to end)."""
    from concurrent.futures import Future, ThreadPoolExecutor

    counts: dict[str, int] = {}

    def add(key: str, n: int) -> None:
        counts[key] = counts.get(key, 0) + n

    model = job.handler.load_model()
    predictions = tf.io.gfile.GFile(f"{job.predictions_prefix}-00000-of-00001.csv", "w")
    dead_letters = tf.io.gfile.GFile(f"{job.dead_prefix}-00000-of-00001.jsonl", "w")
    pending: list[Future] = []

    def write_done(keep: int) -> None:
        while len(pending) > keep:
            (result,) = pending.pop(0).result()
            predictions.write(_to_csv(ProgressBar.count(result)) + "\n")

    with predictions, dead_letters, ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict-score") as scorer:
        predictions.write(job.header + "\n")
        for path, out in _batches(job):
            add(f"rows:{path}", len(out) if isinstance(out, RowBatch) else 1)
            if isinstance(out, RowBatch):
                pending.append(scorer.submit(job.handler.run_inference, [out], model))
                write_done(keep=1)
            else:
                dead_letters.write(json.dumps(out.value) + "\n")
                add(f"dead:{path}", 1)
        write_done(keep=0)
    return counts


def _predict_with_beam(job: _Job, beam_args: Sequence[str]) -> dict[str, int]:
    """The Beam pipeline: read and parse, RunInference, write. Returns its per-file counters."""
    p = beam.Pipeline(options=PipelineOptions(list(beam_args)))
    if job.input_format == "csv":
        parsed = (
            p | "Files" >> beam.Create(job.files) | "Parse" >> beam.ParDo(job.read_csv()).with_outputs(DEAD_LETTER, main="rows")
        )
    else:
        branches = []
        for n, path in enumerate(job.files):
            branches.append(
                p
                | f"Read{n}" >> beam.io.ReadFromTFRecord(path)
                | f"Batch{n}" >> beam.BatchElements(min_batch_size=512, max_batch_size=CHUNK_LINES)
                | f"Parse{n}" >> beam.ParDo(job.parse_examples(path)).with_outputs(DEAD_LETTER, main="rows")
            )
        parsed = {
            "rows": [b.rows for b in branches] | "Rows" >> beam.Flatten(),
            DEAD_LETTER: [b[DEAD_LETTER] for b in branches] | "Dead" >> beam.Flatten(),
        }
    _ = (
        parsed["rows"]
        | "RunInference" >> RunInference(job.handler)
        | "Count" >> beam.Map(ProgressBar.count)
        | "Format" >> beam.Map(_to_csv)
        | "WritePredictions" >> beam.io.WriteToText(job.predictions_prefix, file_name_suffix=".csv", header=job.header)
    )
    _ = (
        parsed[DEAD_LETTER]
        | "DeadLetterJson" >> beam.Map(json.dumps)
        | "WriteDeadLetters" >> beam.io.WriteToText(job.dead_prefix, file_name_suffix=".jsonl")
    )
    result = p.run()
    result.wait_until_finish()
    _release_shared_models()
    return {c.key.metric.name: c.committed for c in result.metrics().query()["counters"] if c.key.metric.namespace == METRICS}
