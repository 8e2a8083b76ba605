"""Helpers shared by the tests: real rows of the bundled data typed by the curated schema,
tf.Example encoding, and tf.Transform's Beam implementation on a list of rows."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import shutil
import socket

import tensorflow as tf

from modules import features as F
from pipeline import pipeline as P

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA_CSV = ROOT / "data" / "taxi.csv"
SCHEMA_PATH = ROOT / "schemas" / "schema.pbtxt"


def load_schema():
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx.utils import io_utils

    return io_utils.parse_pbtxt_file(str(SCHEMA_PATH), schema_pb2.Schema())


def raw_feature_spec() -> dict:
    from tensorflow_transform.tf_metadata import schema_utils

    return schema_utils.schema_as_feature_spec(load_schema()).feature_spec


def read_rows(n: int, start: int = 0) -> list[dict]:
    """Rows of the bundled CSV as {column: [] or [typed value]} (missing -> empty list)."""
    spec = raw_feature_spec()
    rows = []
    with open(DATA_CSV, newline="") as f:
        for i, record in enumerate(csv.DictReader(f)):
            if i < start:
                continue
            if len(rows) == n:
                break
            row = {}
            for key, value in record.items():
                dtype = spec[key].dtype
                if value == "":
                    row[key] = []
                elif dtype == tf.string:
                    row[key] = [value.encode()]
                elif dtype == tf.int64:
                    row[key] = [int(float(value))]
                else:
                    row[key] = [float(value)]
            rows.append(row)
    return rows


def batch(rows: list[dict]):
    """Transformed rows -> (features by name, labels) as numpy arrays, for Keras."""
    import numpy as np

    features = {k: np.array([r[k] for r in rows]) for k in rows[0] if k != F.LABEL_KEY}
    return features, np.array([r[F.LABEL_KEY] for r in rows])


def to_example(row: dict, drop: tuple[str, ...] = ()) -> bytes:
    """One row as a serialized tf.Example; missing values are left out, as CsvExampleGen does."""
    feature = {}
    for key, values in row.items():
        if key in drop or not values:
            continue
        if isinstance(values[0], bytes):
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        elif isinstance(values[0], int):
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
        else:
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def analyze_and_transform(rows: list[dict], output_dir: str):
    """Runs preprocessing_fn through tf.Transform's Beam implementation, as Transform does.

    Returns the transformed rows (what training reads) and writes the transform graph to
    `output_dir` (what the exported model embeds).
    """
    import tempfile

    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    from modules.preprocessing import preprocessing_fn
    from pipeline import beam_speed
    from pipeline.pipeline import TRANSFORM_TF1_GRAPH

    beam_speed.apply()  # as the pipeline's Transform does
    metadata = dataset_metadata.DatasetMetadata(load_schema())
    # Python lists in, lists out: tf.Transform runs the Beam pipeline itself (DirectRunner),
    # in the pipeline's mode.
    with tft_beam.Context(temp_dir=tempfile.mkdtemp(), force_tf_compat_v1=TRANSFORM_TF1_GRAPH):
        (transformed, _), transform_fn = (rows, metadata) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing_fn, output_record_batches=False
        )
        _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    # TFX's Transform also stores the raw schema; the serving signatures read it.
    metadata_io.write_metadata(metadata, os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    return transformed


def dense_columns(rows: list[dict]) -> dict[str, tf.Tensor]:
    """The JSON-client form: one dense column per raw feature, sentinels for missing."""
    spec = {key: s.dtype for key, s in raw_feature_spec().items()}
    missing = {tf.string: F.MISSING_STRING.encode(), tf.int64: F.MISSING_INT, tf.float32: float("nan")}
    return {
        key: tf.constant([r[key][0] if r[key] else missing[spec[key]] for r in rows], dtype=spec[key])
        for key in F.raw_input_keys()
    }


# The pipeline's components and their upstream components: one topology for every runner (the
# data gate sits between validation and Transform; what comes from earlier runs is resolved by
# the components themselves, so there is no resolver node).
EXPECTED_EDGES = {
    P.EXAMPLE_GEN: set(),
    P.STATISTICS_GEN: {P.EXAMPLE_GEN},
    P.SCHEMA_GEN: {P.STATISTICS_GEN},
    P.SCHEMA_IMPORTER: set(),
    P.EXAMPLE_VALIDATOR: {P.STATISTICS_GEN, P.SCHEMA_IMPORTER},
    P.DATA_GATE: {P.EXAMPLE_GEN, P.STATISTICS_GEN, P.SCHEMA_IMPORTER, P.EXAMPLE_VALIDATOR},
    P.TRANSFORM: {P.EXAMPLE_GEN, P.SCHEMA_IMPORTER, P.DATA_GATE},
    P.TRAINER: {P.EXAMPLE_GEN, P.TRANSFORM, P.SCHEMA_IMPORTER},  # raw examples, the transform graph
    P.EVALUATOR: {P.EXAMPLE_GEN, P.TRAINER},
    P.PUSHER: {P.TRAINER, P.EVALUATOR},
}


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Spans of real rows ------------------------------------------------------------------------

SPAN_ROWS = 3000
# Rows the test models never train on (the story's spans are rows 0-12,000).
UNSEEN_START = 12000


def raw_frame():
    """The bundled CSV as text, exactly as written (no type guessing, empty cells stay empty)."""
    import pandas as pd

    return pd.read_csv(DATA_CSV, dtype=str, keep_default_na=False)


def span_rows(span: int):
    """Span N of the test spans: rows (N-1)*3000 .. N*3000 of the bundled data."""
    return raw_frame().iloc[(span - 1) * SPAN_ROWS : span * SPAN_ROWS]


def write_span(data_root, span: int, frame=None, text: str | None = None) -> str:
    folder = pathlib.Path(data_root) / f"span-{span}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    path = folder / "taxi.csv"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    else:
        (span_rows(span) if frame is None else frame).to_csv(path, index=False)
    return str(data_root)


def drifted(span: int):
    """Span N with every trip paid in cash at 3 am: drift in payment_type and trip_start_hour."""
    return span_rows(span).assign(payment_type="Cash", trip_start_hour="3")


def in_minutes(span: int):
    """Span N with trip durations delivered in minutes instead of seconds (whole minutes, so
    the column keeps its integer type): a unit change only drift against earlier spans shows."""
    import pandas as pd

    frame = span_rows(span)
    seconds = pd.to_numeric(frame["trip_seconds"], errors="coerce")
    minutes = (seconds // 60).astype("Int64").astype(str).replace("<NA>", "")
    return frame.assign(trip_seconds=minutes)


def assert_model_facts(
    g, model, spans: list[int], warm_start_spans: list[int], baseline_spans: list[int], reference_span
) -> None:
    """What lineage answers about a model, on either store (local story and Vertex story): the
    spans it trained on, the spans of the model it warm-started from and of its baseline, and
    the span the data gate measured drift against."""
    from pipeline import lineage

    facts = lineage.model_facts(g, model)
    assert facts["trained_by"] == P.TRAINER
    assert {
        "spans": facts["spans"],
        "warm_start_spans": facts["warm_start_spans"],
        "baseline_spans": facts["baseline_spans"],
        "drift_reference_span": facts["drift_reference_span"],
    } == {
        "spans": spans,
        "warm_start_spans": warm_start_spans,
        "baseline_spans": baseline_spans,
        "drift_reference_span": reference_span,
    }


def bad_rows(span: int):
    """Span N with three problems: no fare column, text in trip_miles, a flood of unseen
    payment types and companies."""
    frame = span_rows(span).drop(columns=["fare"])
    frame.loc[frame.index[::50], "trip_miles"] = "about five"
    flooded = frame.index[: len(frame) // 2]
    frame.loc[flooded, "payment_type"] = [f"Wallet-{i % 40}" for i in range(len(flooded))]
    frame.loc[flooded, "company"] = [f"New Cab Co {i % 200}" for i in range(len(flooded))]
    return frame


def snapshot(cfg) -> dict:
    """Every execution and artifact record of a store, and every served file's digest."""
    import hashlib

    from pipeline.stores import open_store

    db = open_store(cfg.metadata_uri)
    served = {}
    for dirpath, _, files in os.walk(cfg.serving_model_dir):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                served[os.path.relpath(path, cfg.serving_model_dir)] = hashlib.sha256(f.read()).hexdigest()
    executions = db.get_executions()
    return {
        "executions": {e.id: e.SerializeToString(deterministic=True) for e in executions},
        "artifacts": {a.id: a.SerializeToString(deterministic=True) for a in db.get_artifacts()},
        "events": len(db.get_events_by_execution_ids([e.id for e in executions])),
        "served": served,
    }


def changed_records(before: dict, after: dict) -> dict[str, list[int]]:
    """Earlier execution and artifact records that differ (new ones may be added)."""
    return {
        kind: [i for i, record in before[kind].items() if after[kind].get(i) != record] for kind in ("executions", "artifacts")
    }


def readme_request_body() -> dict:
    """The request body the README shows (its curl command), as a client would copy it."""
    text = (ROOT / "README.md").read_text()
    body = text.split("localhost:8501/v1/models/taxi:predict -d '", 1)[1].split("'", 1)[0]
    return json.loads(body)


def readme_tour() -> str:
    """The README's tour: the first bash block after its "After the first run" heading, as
    written."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## After the first run", 1)[1]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]
