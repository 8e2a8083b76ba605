"""The Tuner's user code: `tuner_fn` searches SEARCH_SPACE (modules/hparams.py) around the
configured hyperparameters, training each trial like the Trainer does (steps, early stopping,
best weights) and scoring it by the eval split's AUC.

KerasTuner 1.4 runs on Keras 3 and refuses tf_keras models (TFX 1.16 needs Keras 2), so the
trials are run here (`StepsTuner.run_trial`) while KerasTuner's oracle chooses them: Bayesian
optimisation over the space, its trial records and best hyperparameters, which TFX's Tuner
component writes as its `best_hyperparameters` artifact.

On Vertex AI (custom_config "vizier"), Vertex AI Vizier chooses the trials instead
(modules/vizier.py), and TFX's Vertex Tuner runs them in parallel on Vertex AI Training.
"""

from __future__ import annotations

import os
from typing import Any

import keras_tuner as kt
import tensorflow_transform as tft
import tf_keras as keras
from absl import logging as absl_logging
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.components.tuner.component import TunerFnResult

from modules import code
from modules.hparams import SEARCH_SPACE, HParams, from_tuned
from modules.model import build_model
from modules.trainer import EarlyStoppingInSteps, _dataset, fit_steps


def declare(hp: kt.HyperParameters, base: HParams) -> None:
    """Declares SEARCH_SPACE on KerasTuner's HyperParameters, with the configured values as the
    defaults (the first trial: a tuning is never worse than what it starts from)."""
    for name, spec in SEARCH_SPACE.items():
        kind, current = spec[0], getattr(base, name)
        if name == "hidden_units":
            current = ",".join(str(u) for u in current)
        if kind in ("log", "linear"):
            default = float(current) if spec[1] <= current <= spec[2] else None
            extra = {"sampling": "log"} if kind == "log" else {"step": spec[3]}
            hp.Float(name, spec[1], spec[2], default=default, **extra)
        elif kind == "choice":
            hp.Choice(name, spec[1], default=current if current in spec[1] else None)
        else:
            raise ValueError(f"SEARCH_SPACE[{name!r}]: unknown kind {kind!r}")


class StartAtDefaults(kt.oracles.BayesianOptimizationOracle):
    """Bayesian optimisation whose first trial is the configured hyperparameters, so a tuning
    never ends worse than what it started from; then a few random points, then the model."""

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        if not self.trials:
            return {"status": "RUNNING", "values": self.hyperparameters.values}
        return super().populate_space(trial_id)


class StepsTuner(kt.engine.base_tuner.BaseTuner):
    """A trial: HParams from the oracle's values, trained in steps with early stopping; its
    score is the best eval AUC it reached (and the step it reached it at)."""

    def __init__(self, oracle, base: HParams, datasets: dict[int, Any], steps: int, eval_steps: int, **kwargs: Any):
        super().__init__(oracle=oracle, hypermodel=None, **kwargs)
        self.base, self.datasets, self.steps, self.eval_steps = base, datasets, steps, eval_steps

    def run_trial(self, trial, *args: Any, **kwargs: Any) -> dict[str, float]:
        hp = from_tuned(self.base, trial.hyperparameters.values)
        keras.utils.set_random_seed(hp.seed)
        train, evaluation = self.datasets[hp.batch_size]
        model = build_model(hp)
        stopping = EarlyStoppingInSteps(hp.early_stopping_patience or self.steps, hp.steps_per_eval, hp.early_stopping_min_delta)
        fitted = fit_steps(
            model,
            train,
            self.steps,
            hp.steps_per_eval,
            early_stopping=stopping,
            validation_data=evaluation,
            validation_steps=self.eval_steps,
            verbose=0,
        )
        # absl: shown wherever TFX runs the Tuner (on Vertex, in each replica's log).
        absl_logging.info(
            "tuner %s, trial %s: %s -> val_auc %.4f at step %d",
            self.tuner_id,
            trial.trial_id,
            trial.hyperparameters.values,
            fitted.best_value or 0,
            fitted.best_step,
        )
        return {"val_auc": float(fitted.best_value or 0.0), "best_step": float(fitted.best_step)}

    def save_model(self, trial_id: str, model: Any, step: int = 0) -> None:  # models are not kept
        return None


def tuner_fn(fn_args: FnArgs) -> TunerFnResult:
    """TFX Tuner callback. custom_config: {"hparams": the base, "max_trials": N, and on Vertex
    "vizier": {"project", "region", "study_prefix"}: the trials are then Vizier's}."""
    config = fn_args.custom_config or {}
    code.check(config.get("module_fingerprint"), code.TUNER_CODE)
    base = HParams.from_dict(config.get("hparams", {}))
    transform = tft.TFTransformOutput(fn_args.transform_graph_path)
    datasets = {}
    for batch_size in sorted({base.batch_size, *[int(b) for b in SEARCH_SPACE.get("batch_size", ("choice", []))[1]]}):
        datasets[batch_size] = (
            _dataset(fn_args.train_files, fn_args.data_accessor, transform, batch_size, seed=base.seed),
            _dataset(fn_args.eval_files, fn_args.data_accessor, transform, batch_size, seed=base.seed),
        )
    hp = kt.HyperParameters()
    declare(hp, base)
    max_trials = int(config.get("max_trials", 4))
    common = dict(objective=kt.Objective("val_auc", "max"), max_trials=max_trials, hyperparameters=hp, seed=base.seed)
    vizier_settings = config.get("vizier")
    if vizier_settings:
        from modules.vizier import VizierOracle, study_name_for

        # The same tuning (inputs and settings) retried continues its study.
        study = study_name_for(vizier_settings["study_prefix"], fn_args.train_files, fn_args.eval_files, config)
        oracle: kt.Oracle = VizierOracle(
            vizier_settings["project"], vizier_settings["region"], study, SEARCH_SPACE, first_values=hp.values, **common
        )
    else:
        oracle = StartAtDefaults(num_initial_points=max(2, max_trials // 3), **common)
    # Each tuner process gets its own folder: on Vertex, TFX's Tuner gives every replica (and
    # the chief oracle) the same working_dir, and a KerasTuner project folder is not shared.
    directory = os.path.join(fn_args.working_dir, f"{os.environ.get('KERASTUNER_TUNER_ID', 'tuner')}-{os.getpid()}")
    tuner = StepsTuner(
        oracle,
        base,
        datasets,
        fn_args.train_steps,
        fn_args.eval_steps,
        directory=directory,
        project_name="taxi",
        overwrite=True,
    )
    return TunerFnResult(tuner=tuner, fit_kwargs={})
