"""The real pipeline with LocalDagRunner, Beam DirectRunner and a SQLite MLMD store: the first
run of the story, its unchanged re-run, and the full data's quality bar."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics import roc_auc_score

from helpers import UNSEEN_START, dense_columns, read_rows, to_example
from modules import features as F
from modules.contract import PREDICTION_KEY, SERVING_RAW_SIGNATURE
from modules.trainer import SUMMARY_EVERY_STEPS, TRAINING_RECORD
from pipeline import lineage
from pipeline import pipeline as P

# The story of pipeline runs is built once, in one worker: its tests go there.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("story")]

ALL_COMPONENTS = {
    P.EXAMPLE_GEN,
    P.STATISTICS_GEN,
    P.SCHEMA_GEN,
    P.SCHEMA_IMPORTER,
    P.EXAMPLE_VALIDATOR,
    P.DATA_GATE,
    P.TRANSFORM,
    P.TRAINER,
    P.EVALUATOR,
    P.PUSHER,
}


def test_first_run_runs_every_component_blesses_and_pushes_version_one(s1_first):
    summary = s1_first.summary
    assert summary["status"] == "complete"
    assert summary["components"] == {c: "ran" for c in ALL_COMPONENTS}
    assert summary["blessed"] is True
    assert summary["metrics"]["auc"] >= 0.85
    assert 700 < summary["metrics"]["example_count"] < 1300  # the eval third of 3,000 rows
    assert os.path.dirname(summary["pushed_model"]) == s1_first.cfg.serving_model_dir
    [pushed] = s1_first.metadata().pushed_models()
    assert lineage.pushed_version(pushed) == os.path.basename(summary["pushed_model"])


def test_served_model_answers_both_signatures_alike_on_unseen_rows(s1_first):
    model = tf.saved_model.load(s1_first.summary["pushed_model"])
    rows = read_rows(500, start=UNSEEN_START)
    labels = [int(r["fare"][0] > 0 and r["tips"][0] > 0.2 * r["fare"][0]) for r in rows]
    examples = tf.constant([to_example(r, drop=F.LABEL_SOURCE_KEYS) for r in rows])
    by_example = model.signatures["serving_default"](examples=examples)[PREDICTION_KEY].numpy()
    by_json = model.signatures[SERVING_RAW_SIGNATURE](**dense_columns(rows))[PREDICTION_KEY].numpy()
    np.testing.assert_allclose(by_example, by_json, rtol=1e-5, atol=1e-6)
    assert roc_auc_score(labels, by_example) > 0.85


def test_trainer_trains_exactly_the_configured_steps(s1_first):
    """250 steps with a validation every 100: 250 optimizer steps, recorded with the model."""
    run = s1_first.metadata().latest_run()
    record = json.loads(tf.io.gfile.GFile(os.path.join(run.output(P.TRAINER, "model_run").uri, TRAINING_RECORD)).read())
    assert record["steps_trained"] == record["train_steps"] == s1_first.cfg.train_steps == 250
    # Early stopping (patience 300 steps) cannot stop a 250-step run; the weights kept are the
    # best validation's, one of steps 100, 200 and 250.
    assert not record["stopped_early"] and record["best_step"] in (100, 200, 250)
    assert record["warm_start"] == {"base_model": None, "applied": False}


def test_metadata_records_executions_and_lineage_inputs(s1_first):
    md = s1_first.metadata()
    run = md.latest_run()
    assert set(run.components) == ALL_COMPONENTS
    types = {a.type for a in md.graph.artifacts.values()}
    assert {
        "Examples",
        "ExampleStatistics",
        "Schema",
        "ExampleAnomalies",
        lineage.GATE_RESULT_TYPE,
        "TransformGraph",
        "Model",
        "ModelEvaluation",
        "ModelBlessing",
        "PushedModel",
    } <= types
    # The trained model's execution consumed the transform graph this run produced.
    trainer = md.graph.executions[str(run.components[P.TRAINER].execution_id)]
    assert run.output(P.TRANSFORM, "transform_graph") in md.graph.inputs(trainer)["transform_graph"]


def test_unchanged_rerun_is_all_cache_hits_and_pushes_nothing_new(s1_first, s2_rerun):
    first, second = s1_first.summary, s2_rerun.summary
    assert second["run_id"] != first["run_id"]
    for component, state in second["components"].items():
        assert state == "cached", component
    # The same model is not pushed again as a new version.
    assert second["pushed_model"] == first["pushed_model"]


@pytest.mark.quality
@pytest.mark.xdist_group("full")
def test_full_data_model_meets_the_quality_bar(full_data_run):
    """The default configuration on all 15,002 rows: the bar from the foundation issue."""
    _, summary = full_data_run
    assert summary["blessed"]
    assert summary["metrics"]["binary_accuracy"] >= 0.90
    assert summary["metrics"]["auc"] >= 0.955


def test_tensorboard_serves_the_trainers_curves_from_the_venv(s1_first, tmp_path):
    """TensorBoard as `make tensorboard` starts it, on loopback, over the runs' model_run
    folders: its scalars API returns the training curve at SUMMARY_EVERY_STEPS resolution."""
    import subprocess
    import sys
    import time

    import requests

    from helpers import free_port

    logdir = os.path.join(s1_first.cfg.pipeline_root, P.TRAINER, "model_run")
    port = free_port()
    log = open(tmp_path / "tensorboard.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    # A run's curve has a point every SUMMARY_EVERY_STEPS of the steps it actually trained
    # (early stopping can end it before its budget; its training record says), and
    # TensorBoard reads event files in the background: the test waits until all are read.
    try:
        deadline, steps, expected, tags = time.time() + 120, [], None, {}
        while expected is None or len(steps) < expected:
            assert proc.poll() is None and time.time() < deadline, (steps, (tmp_path / "tensorboard.log").read_text()[-2000:])
            time.sleep(1)
            try:
                tags = requests.get(f"{url}/data/plugin/scalars/tags", timeout=5).json()
            except requests.ConnectionError:
                continue
            run = next((r for r, t in sorted(tags.items()) if "batch_loss" in t and r.endswith("/train")), None)
            if run is None:
                continue
            with open(os.path.join(logdir, run.rsplit("/", 1)[0], TRAINING_RECORD)) as f:
                expected = json.load(f)["steps_trained"] // SUMMARY_EVERY_STEPS
            points = requests.get(f"{url}/data/plugin/scalars/scalars", params={"run": run, "tag": "batch_loss"}, timeout=5)
            steps = [step for _, step, _ in points.json()]
        assert expected >= 1 and steps == sorted(steps)
        assert any("epoch_loss" in t for r, t in tags.items() if r.endswith("validation"))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.mark.xdist_group("full")
def test_the_readme_tour_works_as_written(full_data_run, tmp_path):
    """The README's tour, from the README text itself, in bash as a new user runs it after
    `make run`: a fresh shell whose `python` is not the project's (its first line activates
    the environment), the outputs of a default run on the bundled data."""
    import subprocess

    from helpers import ROOT, readme_tour

    cfg, summary = full_data_run
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=path, PIPELINE_OUTPUT=os.path.dirname(cfg.metadata_uri))
    env.pop("PIPELINE_METADATA", None)
    done = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + readme_tour()], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    version = os.path.basename(summary["pushed_model"])
    assert summary["run_id"] in out and version in out  # runs
    assert "PushedModel #" in out and "<- trainer" in out  # lineage served
    response = json.loads(next(line for line in out.splitlines() if line.startswith('{"predictions"')))
    assert 0 <= response["predictions"][0] <= 1 and response["model_version"] == version  # curl
    assert "scored 15002, dead letters 0 -> /tmp/scored" in out  # predict
    assert "ok: no anomalies" in out  # validate
    assert os.path.isfile(os.path.join(os.path.dirname(cfg.metadata_uri), "report.html"))  # report
