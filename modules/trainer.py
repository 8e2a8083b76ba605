"""TFX Trainer entry point: datasets, step-based training, export with serving signatures.

The exported SavedModel embeds the tf.Transform graph and has the signatures that
`modules/contract.py` names.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
from tfx_bsl.public import tfxio

from modules import code
from modules import features as F
from modules.contract import PREDICTION_KEY, RAW_SCHEMA_FILE, SERVING_RAW_SIGNATURE, TRANSFORM_SIGNATURE, serving_raw_spec
from modules.hparams import HParams, from_tuned
from modules.model import build_model

logger = logging.getLogger(__name__)


# Splits up to this size (compressed TFRecords; transformed, ~5x that in memory) are read and
# transformed once and held in memory as tensors; each batch gathers shuffled row indices.
# Parsing tf.Examples for every step instead cost ~19 ms per 1,024 rows on 2 cores, three times
# the training step itself (bench/RESULTS.md), before the transform is even applied. Larger
# splits stream from disk through TFX's dataset factory and are transformed batch by batch.
IN_MEMORY_MAX_BYTES = 256 * 2**20
_LOAD_BATCH = 8192
_STREAM_SHUFFLE_ROWS = 10_000


def _split_bytes(file_pattern: list[str]) -> int:
    return sum(tf.io.gfile.stat(path).length for pattern in file_pattern for path in tf.io.gfile.glob(pattern))


def _dataset(
    file_pattern: list[str],
    data_accessor: DataAccessor,
    tf_transform_output: tft.TFTransformOutput,
    batch_size: int,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Endless, shuffled (features, label) batches of raw examples transformed by the transform
    graph as they are read: the graph the served model applies to a request (Transform writes
    no transformed examples).

    Every pass over an in-memory split is a fresh permutation of all its rows; a streamed split
    is shuffled through a buffer of _STREAM_SHUFFLE_ROWS rows.
    """
    tft_layer = tf_transform_output.transform_features_layer()

    def transform(raw: dict[str, Any]) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        transformed = dict(tft_layer(raw))
        return transformed, transformed.pop(F.LABEL_KEY)

    def raw_batches(size: int, **options) -> tf.data.Dataset:
        return data_accessor.tf_dataset_factory(
            file_pattern, tfxio.TensorFlowDatasetOptions(batch_size=size, **options), tf_transform_output.raw_metadata.schema
        )

    if _split_bytes(file_pattern) > IN_MEMORY_MAX_BYTES:
        return (
            raw_batches(batch_size, shuffle_seed=seed, shuffle_buffer_size=_STREAM_SHUFFLE_ROWS)
            .map(transform, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE)
        )
    parts = [transform(raw) for raw in raw_batches(_LOAD_BATCH, num_epochs=1, shuffle=False)]
    if not parts:
        raise ValueError(f"no examples in {file_pattern}")
    features = {key: tf.concat([f[key] for f, _ in parts], axis=0) for key in parts[0][0]}
    labels = tf.concat([label for _, label in parts], axis=0)
    rows = int(labels.shape[0])

    def gather(index):
        return {key: tf.gather(value, index) for key, value in features.items()}, tf.gather(labels, index)

    return (
        tf.data.Dataset.range(rows)
        .shuffle(rows, seed=seed, reshuffle_each_iteration=True)
        .repeat()
        .batch(batch_size)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def _dense_to_sparse(x: tf.Tensor) -> tf.SparseTensor:
    """[batch] dense with sentinels (NaN, MISSING_INT, MISSING_STRING) -> [batch, 1] sparse.

    The result is what tf.io.parse_example yields for an optional feature, so both serving
    signatures feed the Transform graph identical tensors.
    """
    if x.dtype.is_floating:
        present = tf.logical_not(tf.math.is_nan(x))
    elif x.dtype == tf.string:
        present = tf.not_equal(x, F.MISSING_STRING)
    else:
        present = tf.not_equal(x, tf.cast(F.MISSING_INT, x.dtype))
    rows = tf.where(present)  # [n, 1] int64
    indices = tf.concat([rows, tf.zeros_like(rows)], axis=1)
    return tf.SparseTensor(indices, tf.boolean_mask(x, present), tf.stack([tf.size(x, out_type=tf.int64), 1]))


def _parsed_spec(feature_spec: dict) -> dict[str, tf.TypeSpec]:
    """What tf.io.parse_example returns for `feature_spec`, as type specs."""
    specs: dict[str, tf.TypeSpec] = {}
    for key, feature in feature_spec.items():
        if isinstance(feature, tf.io.VarLenFeature):
            specs[key] = tf.SparseTensorSpec([None, None], feature.dtype)
        elif isinstance(feature, tf.io.FixedLenFeature):
            specs[key] = tf.TensorSpec([None, *feature.shape], feature.dtype)
        else:
            raise TypeError(f"{key}: a {type(feature).__name__} is not a raw feature this export serves")
    return specs


class _ServingModule(tf.Module):
    """Holds the model's variables and the Transform graph's resources so that
    tf.saved_model.save tracks both, and the serving signatures.

    Neither the Keras model nor tf.Transform's Keras layer is tracked as a child: tracked, each
    Keras layer adds traced functions of its own to the SavedModel, and every trace of the
    Transform layer adds a pruned copy of the whole Transform graph (six of them, most of the
    export's and every load's time). The two serving signatures share one traced
    application of the Transform graph; `transform_features` (with the label's inputs) has
    the other.
    """

    def __init__(self, model: keras.Model, tf_transform_output: tft.TFTransformOutput):
        super().__init__()
        self.model_variables = list(model.variables)
        tft_layer = tf_transform_output.transform_features_layer()  # held by the functions below
        # What tf.Transform's layer itself tracks: the loaded Transform graph's tables, assets
        # and variables (tensorflow_transform/output_wrapper.py, TransformFeaturesLayer).
        self.transform_graph = tft_layer._saved_model_loader_tracked_dict
        raw_spec = tf_transform_output.raw_feature_spec()
        self._serving_parse_spec = {k: v for k, v in raw_spec.items() if k not in F.LABEL_SOURCE_KEYS}
        self._full_parse_spec = raw_spec
        self._model_inputs = list(model.input_names)

        # One input signature for both ways in: tf.io.parse_example's output for the raw spec
        # (the raw signature's _dense_to_sparse yields the same), so one trace, one copy.
        model_raw_keys = F.raw_input_keys()  # what the raw signature takes

        @tf.function(input_signature=[_parsed_spec({k: raw_spec[k] for k in model_raw_keys})])
        def predict(raw):
            transformed = tft_layer(raw)
            probability = model({k: transformed[k] for k in self._model_inputs})
            return {PREDICTION_KEY: tf.squeeze(probability, axis=1)}

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def serve_examples(examples):
            raw = tf.io.parse_example(examples, self._serving_parse_spec)
            return predict({k: raw[k] for k in model_raw_keys})

        @tf.function(input_signature=[serving_raw_spec(raw_spec)])
        def serve_raw(features):
            return predict({k: _dense_to_sparse(v) for k, v in features.items()})

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
        def transform_features(examples):
            return tft_layer(tf.io.parse_example(examples, self._full_parse_spec))

        self.serving_signatures = {
            "serving_default": serve_examples,
            SERVING_RAW_SIGNATURE: serve_raw,
            TRANSFORM_SIGNATURE: transform_features,
        }


def export_serving_model(model: keras.Model, tf_transform_output: tft.TFTransformOutput, export_dir: str) -> None:
    """Saves `model` with the Transform graph and the serving signatures to `export_dir`."""
    module = _ServingModule(model, tf_transform_output)
    tf.saved_model.save(module, export_dir, signatures=module.serving_signatures)
    from google.protobuf import text_format

    schema_path = f"{export_dir}/{RAW_SCHEMA_FILE}"
    tf.io.gfile.makedirs(schema_path.rsplit("/", 1)[0])
    with tf.io.gfile.GFile(schema_path, "w") as f:
        f.write(text_format.MessageToString(tf_transform_output.raw_metadata.schema))


def _warm_start(model: keras.Model, base_model_dir: str) -> bool:
    """Copies weights from the previous model when its architecture matches."""
    base = tf.saved_model.load(base_model_dir)
    try:
        # model_variables since the lean export; exports before it tracked the Keras model.
        variables = base.model_variables if hasattr(base, "model_variables") else base.model.variables
        base_weights = {v.name: v for v in variables}
    except AttributeError:
        logger.warning("warm start skipped: %s has no tracked model", base_model_dir)
        return False
    ours = {v.name: v for v in model.variables}
    if set(base_weights) != set(ours) or any(base_weights[n].shape != ours[n].shape for n in ours):
        logger.warning("warm start skipped: %s has a different architecture", base_model_dir)
        return False
    for name, var in ours.items():
        var.assign(base_weights[name])
    return True


TRAINING_RECORD = "training.json"
SUMMARY_EVERY_STEPS = 50


class TrainingCurves(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback with its per-batch work done only at the steps it records.

    Keras calls every callback's batch hooks once one callback has them (StopAtStep does), and
    TensorBoard's makes an eager summary call per metric at every step, recorded or not
    (`update_freq`: one step in SUMMARY_EVERY_STEPS): ~1 s of a 20 s Trainer, profiled. Here
    the hook runs at the steps TensorBoard's own condition records (its step counter a
    multiple of `update_freq`), so the event files hold the same points."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not isinstance(self.update_freq, int) or self._should_write_train_graph or self._recorded_step():
            super().on_train_batch_end(batch, logs)

    def _recorded_step(self) -> bool:
        return int(self._train_step.numpy()) % self.update_freq == 0


class StopAtStep(keras.callbacks.Callback):
    """Ends training after exactly `steps` steps. Keras counts in epochs; the last epoch is cut
    short here (its validation still runs) instead of rounding the budget up to whole epochs."""

    def __init__(self, steps: int):
        super().__init__()
        self.steps = steps
        self.trained = 0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.trained += 1
        if self.trained >= self.steps:
            self.model.stop_training = True


class EarlyStoppingInSteps(keras.callbacks.Callback):
    """Stops when `monitor` (validated every `steps_per_eval` steps) has not improved by
    `min_delta` for `patience` steps, and restores the weights of the best validation."""

    def __init__(self, patience: int, steps_per_eval: int, min_delta: float, monitor: str = "val_auc"):
        super().__init__()
        self.patience, self.steps_per_eval, self.min_delta, self.monitor = patience, steps_per_eval, min_delta, monitor
        self.best = -math.inf
        self.best_step = 0
        self.best_weights: list | None = None
        self.step = 0
        self.stopped_early = False

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.step += 1

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            return
        if value > self.best + self.min_delta:
            self.best, self.best_step, self.best_weights = float(value), self.step, self.model.get_weights()
        elif self.step - self.best_step >= self.patience:
            self.stopped_early = True
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None and self.best_step != self.step:
            self.model.set_weights(self.best_weights)


@dataclasses.dataclass(frozen=True)
class Fitted:
    steps_trained: int  # optimizer steps run
    best_step: int  # the step whose weights the model has (== steps_trained without early stopping)
    stopped_early: bool
    best_value: float | None  # the monitored eval metric at best_step


def fit_steps(
    model: keras.Model,
    train: tf.data.Dataset,
    steps: int,
    steps_per_eval: int,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    early_stopping: EarlyStoppingInSteps | None = None,
    **fit_args: Any,
) -> Fitted:
    """Trains for at most `steps` steps (exactly that many without early stopping),
    validating every `steps_per_eval` steps and at the end."""
    stop = StopAtStep(steps)
    steps_per_epoch = min(steps_per_eval, steps)
    model.fit(
        train,
        steps_per_epoch=steps_per_epoch,
        epochs=math.ceil(steps / steps_per_epoch),
        callbacks=[*callbacks, *([early_stopping] if early_stopping else []), stop],
        **fit_args,
    )
    if early_stopping is None or early_stopping.best_weights is None:
        return Fitted(stop.trained, stop.trained, False, None)
    return Fitted(stop.trained, early_stopping.best_step, early_stopping.stopped_early, early_stopping.best)


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer callback: trains for `fn_args.train_steps` steps and exports the model."""
    code.check(fn_args.custom_config.get("module_fingerprint"), code.TRAINER_CODE)
    hp = HParams.from_dict(fn_args.custom_config.get("hparams", {}))
    tuned = (getattr(fn_args, "hyperparameters", None) or {}).get("values")
    if tuned:  # the Tuner's best_hyperparameters (this run's tuning, or the newest recorded)
        hp = from_tuned(hp, tuned)
        logger.info("tuned hyperparameters: %s", hp)
    started = time.monotonic()
    keras.utils.set_random_seed(hp.seed)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    train = _dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, hp.batch_size, seed=hp.seed)
    evaluation = _dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output, hp.batch_size, seed=hp.seed)

    model = build_model(hp)
    base_model = getattr(fn_args, "base_model", None)
    warm = {"base_model": base_model, "applied": bool(hp.warm_start and base_model and _warm_start(model, base_model))}
    logger.info("warm start: %s", warm)

    # Think in steps: an "epoch" here is only the interval between validations and summaries.
    fit_started = time.monotonic()
    stopping = None
    if hp.early_stopping_patience:
        stopping = EarlyStoppingInSteps(hp.early_stopping_patience, hp.steps_per_eval, hp.early_stopping_min_delta)
    fitted = fit_steps(
        model,
        train,
        fn_args.train_steps,
        hp.steps_per_eval,
        # Training curves every 50 steps, validation at every evaluation: enough points to see.
        callbacks=[TrainingCurves(log_dir=fn_args.model_run_dir, update_freq=SUMMARY_EVERY_STEPS)],
        early_stopping=stopping,
        validation_data=evaluation,
        validation_steps=fn_args.eval_steps,
        verbose=2,
    )
    # The record of how this model was made: what it started from and how long it trained.
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(f"{fn_args.model_run_dir}/{TRAINING_RECORD}", "w") as f:
        f.write(
            json.dumps(
                {
                    "warm_start": warm,
                    "train_steps": fn_args.train_steps,
                    **dataclasses.asdict(fitted),
                    "hparams": hp.to_dict(),
                    "tuned": bool(tuned),
                },
            )
        )
    export_started = time.monotonic()
    export_serving_model(model, tf_transform_output, fn_args.serving_model_dir)
    logger.info(
        "trainer seconds: set-up %.1f, fit %.1f, export %.1f",
        fit_started - started,
        export_started - fit_started,
        time.monotonic() - export_started,
    )
