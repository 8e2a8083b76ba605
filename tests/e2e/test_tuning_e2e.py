"""Tuning: the TFX Tuner searching modules/hparams.py's SEARCH_SPACE on a tiny budget, its best
hyperparameters reaching the Trainer, and a later run without --tune training with them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from helpers import ROOT, SCHEMA_PATH, write_span
from modules.hparams import HParams, from_tuned
from modules.trainer import TRAINING_RECORD
from ops.queries import Metadata, open_metadata
from pipeline import configs, lineage
from pipeline import pipeline as P
from runners import local

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("tuning")]

THRESHOLDS = configs.EvalThresholds(min_auc=0.8, min_accuracy=0.75, max_auc_regression=1.0, max_accuracy_regression=1.0)


def config(root, **overrides) -> configs.PipelineConfig:
    values = dict(train_steps=200, eval_steps=5, thresholds=THRESHOLDS, hparams=HParams(steps_per_eval=100))
    values.update(overrides)
    return configs.local_config(str(root / "out"), str(root / "data"), str(SCHEMA_PATH), **values)


def record(md: Metadata, run) -> dict:
    return json.loads(tf.io.gfile.GFile(os.path.join(run.output(P.TRAINER, "model_run").uri, TRAINING_RECORD)).read())


@pytest.fixture(scope="session")
def tuned(tmp_path_factory):
    """`runner.py run --tune 3` as an operator runs it, without --verbose."""
    root = tmp_path_factory.mktemp("tuning")
    write_span(root / "data", 1)
    cfg = config(root, tune_trials=3)
    argv = [
        sys.executable,
        str(ROOT / "runner.py"),
        "run",
        "--tune",
        "3",
        "--data",
        str(root / "data"),
        "--output",
        str(root / "out"),
    ]
    argv += ["--train-steps", "200", "--hparams", json.dumps({"steps_per_eval": 100}), "--json"]
    # A shell as an operator has it: no TF_CPP_MIN_LOG_LEVEL of the test's own.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1200, env=dict(env, TF_USE_LEGACY_KERAS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    md = open_metadata(cfg.metadata_uri, cfg.pipeline_name)
    return root, cfg, md, md.latest_run(), done


def test_tuning_is_quiet_without_verbose(tuned):
    """Without --verbose: the summary on stdout, progress lines on stderr, and nothing else
    (no KerasTuner search space, trial tables, epoch lines or terminal control codes)."""
    *_, done = tuned
    assert json.loads(done.stdout)["status"] == "complete"
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("progress [") for line in lines), [
        line for line in lines if not line.startswith("progress [")
    ][:10]
    assert "\x1b" not in done.stderr and "Trial" not in done.stderr and "Epoch" not in done.stderr


def test_the_tuner_searches_from_the_defaults_and_the_trainer_trains_with_its_best(tuned):
    _, cfg, md, run, _ = tuned
    assert run.components[P.TUNER].state == "ran"
    results = json.loads(tf.io.gfile.GFile(os.path.join(run.output(P.TUNER, "tuner_results").uri, "tuner_results.json")).read())
    assert len(results) == 3
    defaults = cfg.hparams
    first = next(r for r in results if r["trial_id"] == "0")  # the first trial: the configured values
    assert from_tuned(defaults, first) == defaults
    best = json.loads(
        tf.io.gfile.GFile(os.path.join(run.output(P.TUNER, "best_hyperparameters").uri, "best_hyperparameters.txt")).read()
    )
    assert max(r["score"] for r in results) == next(
        r["score"] for r in results if from_tuned(defaults, r) == from_tuned(defaults, best["values"])
    )
    trained = record(md, run)
    assert trained["tuned"] and HParams.from_dict(trained["hparams"]) == from_tuned(defaults, best["values"])


def test_a_later_run_without_tune_trains_with_the_newest_tuning(tuned, cli):
    root, cfg, md, first, _ = tuned
    later = config(root, train_steps=150)  # another budget: the Trainer runs again
    local.run(later)
    md.refresh()
    run = md.latest_run()
    assert P.TUNER not in run.components and run.components[P.TRAINER].state == "ran"
    # The Trainer resolved the newest tuning itself, and recorded it on its model.
    tuning = first.output(P.TUNER, "best_hyperparameters")
    assert run.output(P.TRAINER, "model").props[lineage.HYPERPARAMETERS_FROM] == tuning.uri
    assert record(md, run)["hparams"] == record(md, first)["hparams"] and record(md, run)["tuned"]
    # Lineage: the model's hyperparameters come from the first run's Tuner.
    model = run.output(P.TRAINER, "model")
    code, out, err = cli("lineage", "--metadata", cfg.metadata_uri, str(model.id), "--json")
    assert code == 0, err
    text = json.dumps(json.loads(out))
    assert f'"id": {tuning.id}' in text or f'"{P.TUNER}' in text
    # What compare reads: the hyperparameters the model trained with, and the tuning behind them.
    inputs = md.training_inputs(model)
    assert inputs["tuned_by"] == first.output(P.TUNER, "best_hyperparameters").id
    assert HParams.from_dict(inputs["hparams"]) == HParams.from_dict(record(md, run)["hparams"])
