"""The real pipeline with LocalDagRunner, Beam DirectRunner and a SQLite MLMD store."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from sklearn.metrics import roc_auc_score

from helpers import DATA_CSV, SAMPLE_ROWS, SCHEMA_PATH, dense_columns, read_rows, to_example
from modules import features as F
from modules.trainer import PREDICTION_KEY, SERVING_RAW_SIGNATURE
from pipeline import local, metadata
from pipeline import pipeline as P

pytestmark = pytest.mark.e2e

ALL_COMPONENTS = {
    P.EXAMPLE_GEN, P.STATISTICS_GEN, P.SCHEMA_GEN, P.SCHEMA_IMPORTER, P.EXAMPLE_VALIDATOR,
    P.DATA_GATE, P.SPAN_WINDOW_RESOLVER, P.WARM_START_RESOLVER, P.DRIFT_REFERENCE_RESOLVER,
    P.TRANSFORM, P.TRAINER, P.BASELINE_RESOLVER, P.EVALUATOR, P.PUSHER,
}


def test_every_component_ran_and_the_model_was_blessed_and_pushed(sample_run):
    cfg, summary = sample_run
    assert summary["status"] == "complete"
    assert summary["components"] == {c: "ran" for c in ALL_COMPONENTS}
    assert summary["blessed"] is True
    assert summary["metrics"]["auc"] >= 0.85
    assert summary["metrics"]["example_count"] > 0.25 * SAMPLE_ROWS
    pushed = summary["pushed_model"]
    assert os.path.dirname(pushed) == cfg.serving_model_dir
    assert tf.saved_model.contains_saved_model(pushed)


def test_served_model_predicts_unseen_raw_rows(sample_run):
    _, summary = sample_run
    model = tf.saved_model.load(summary["pushed_model"])
    rows = read_rows(500, start=SAMPLE_ROWS + 1)  # not in the sample the model saw
    labels = [int(r["fare"][0] > 0 and r["tips"][0] > 0.2 * r["fare"][0]) for r in rows]
    examples = tf.constant([to_example(r, drop=F.LABEL_SOURCE_KEYS) for r in rows])
    by_example = model.signatures["serving_default"](examples=examples)[PREDICTION_KEY].numpy()
    by_json = model.signatures[SERVING_RAW_SIGNATURE](**dense_columns(rows))[PREDICTION_KEY].numpy()
    np.testing.assert_allclose(by_example, by_json, rtol=1e-5, atol=1e-6)
    assert roc_auc_score(labels, by_example) > 0.85


def test_metadata_records_executions_and_lineage_inputs(sample_run):
    cfg, _ = sample_run
    store = metadata.open_store(cfg.metadata_uri)
    run = metadata.Metadata(store, cfg.pipeline_name).latest_run()
    assert set(run.components) == ALL_COMPONENTS
    types = {a.type for a in store.get_artifacts()}
    assert {"Examples", "ExampleStatistics", "Schema", "ExampleAnomalies", "TransformGraph", "Model",
            "ModelEvaluation", "ModelBlessing", "PushedModel"} <= types
    # The trained model's execution consumed the transform graph this run produced.
    trainer_inputs = [e for e in store.get_events_by_execution_ids([run.components[P.TRAINER].execution_id])
                      if e.type == metadata_store_pb2.Event.INPUT]
    graph = run.output(P.TRANSFORM, "transform_graph")
    assert graph.id in {e.artifact_id for e in trainer_inputs}


def test_unchanged_rerun_is_served_from_cache(sqlite_history):
    _, (first, second, _) = sqlite_history
    assert second["run_id"] != first["run_id"]
    for component in (P.EXAMPLE_GEN, P.STATISTICS_GEN, P.SCHEMA_IMPORTER, P.TRANSFORM, P.TRAINER):
        assert second["components"][component] == "cached", component
    # The same model is not pushed again as a new version.
    assert second["pushed_model"] == first["pushed_model"]


@pytest.mark.quality
def test_full_data_model_meets_the_quality_bar(tmp_path):
    """The default configuration on all 15,002 rows: the bar from the foundation issue."""
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(DATA_CSV, data / "taxi.csv")
    cfg = local.build_config(str(tmp_path / "out"), str(data), str(SCHEMA_PATH))
    summary = local.run(cfg)
    assert summary["blessed"]
    assert summary["metrics"]["binary_accuracy"] >= 0.90
    assert summary["metrics"]["auc"] >= 0.955


def test_only_distinct_models_get_serving_versions(sqlite_history):
    cfg, (first, _, third) = sqlite_history
    versions = sorted(os.listdir(cfg.serving_model_dir))
    assert [os.path.join(cfg.serving_model_dir, v) for v in versions] == [first["pushed_model"], third["pushed_model"]]
