"""The Keras model: real training steps on transformed rows, and the step budget."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from helpers import batch
from modules import features as F
from modules.hparams import HParams
from modules.model import build_model
from modules.trainer import EarlyStoppingInSteps, fit_steps

# They share one tf.Transform analysis of sample rows (a session fixture): one worker.
pytestmark = pytest.mark.xdist_group("transform-sample")


def test_training_steps_reduce_the_loss(transformed_sample):
    tf.keras.utils.set_random_seed(0)
    rows, _ = transformed_sample
    features, labels = batch(rows)
    model = build_model(HParams(batch_size=64, dropout=0.0))
    before = model.evaluate(features, labels, verbose=0)[0]
    model.fit(features, labels, batch_size=64, epochs=15, verbose=0)
    after = model.evaluate(features, labels, verbose=0)[0]
    assert after < 0.7 * before


def test_wide_part_sees_crosses_and_deep_part_does_not():
    model = build_model(HParams())
    names = {layer.name for layer in model.layers}
    for cross in F.CROSSES:
        assert f"wide_{F.transformed_name(cross)}" in names
        assert f"emb_{F.transformed_name(cross)}" not in names
    assert f"emb_{F.transformed_name('company')}" in names


def test_early_stopping_counts_patience_in_steps_and_keeps_the_best_weights(transformed_sample):
    """A min_delta no validation can beat: the first validation (step 50) stays the best, and
    training stops once 100 more steps have not improved on it, at step 150, not at the budget;
    the model ends with the step-50 weights."""
    rows, _ = transformed_sample
    features, labels = batch(rows)
    data = tf.data.Dataset.from_tensor_slices((features, labels)).repeat().batch(32)
    model = build_model(HParams(batch_size=32))
    stopping = EarlyStoppingInSteps(patience=100, steps_per_eval=50, min_delta=1.0)
    fitted = fit_steps(model, data, 1000, 50, early_stopping=stopping, validation_data=data, validation_steps=3, verbose=0)
    assert (fitted.steps_trained, fitted.best_step, fitted.stopped_early) == (150, 50, True)
    assert int(model.optimizer.iterations.numpy()) == 150
    for restored, best in zip(model.get_weights(), stopping.best_weights):
        np.testing.assert_array_equal(restored, best)
    # And it does improve on an easy target: a real min_delta lets training go on past step 50.
    model = build_model(HParams(batch_size=32))
    fitted = fit_steps(
        model,
        data,
        300,
        50,
        early_stopping=EarlyStoppingInSteps(300, 50, 0.0),
        validation_data=data,
        validation_steps=3,
        verbose=0,
    )
    assert fitted.steps_trained == 300 and fitted.best_step > 50


@pytest.mark.parametrize("steps, steps_per_eval", [(700, 500), (300, 500), (1000, 500), (1, 500)])
def test_training_runs_exactly_the_step_budget(transformed_sample, steps, steps_per_eval):
    """Steps, not epochs: 700 steps with a validation every 500 is 700 optimizer updates, not
    two whole "epochs" of 500."""
    rows, _ = transformed_sample
    features, labels = batch(rows)
    data = tf.data.Dataset.from_tensor_slices((features, labels)).repeat().batch(32)
    model = build_model(HParams(batch_size=32))
    fitted = fit_steps(model, data, steps, steps_per_eval, verbose=0)
    assert fitted.steps_trained == fitted.best_step == steps and not fitted.stopped_early
    assert int(model.optimizer.iterations.numpy()) == steps
    # One trace of the training step: build_model made the optimizer's variables beforehand.
    assert model.train_function.experimental_get_tracing_count() == 1


def _curves(callback_class, logdir, steps: int = 130) -> list[tuple[str, int, float]]:
    """(tag, step, value) of the batch scalars a callback writes over `steps` steps of a small
    model, trained as fit_steps trains (StopAtStep gives Keras batch hooks)."""
    from tensorboard.backend.event_processing import event_accumulator

    tf.keras.utils.set_random_seed(3)
    x = np.random.default_rng(0).normal(size=(512, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat()
    fit_steps(model, train, steps, 40, callbacks=[callback_class(log_dir=str(logdir), update_freq=50)], verbose=0)
    events = event_accumulator.EventAccumulator(str(logdir / "train"), size_guidance={"tensors": 0})
    events.Reload()
    return [
        (tag, e.step, float(tf.make_ndarray(e.tensor_proto)))
        for tag in sorted(events.Tags()["tensors"])
        if tag.startswith("batch_")
        for e in events.Tensors(tag)
    ]


def test_the_training_curves_are_the_points_keras_tensorboard_writes(tmp_path, monkeypatch):
    """TrainingCurves runs TensorBoard's batch hook only where it writes something: the same
    points and values as Keras' own callback, the hook called 3 times in 130 steps."""
    from modules.trainer import TrainingCurves

    ours_calls = []
    hook = tf.keras.callbacks.TensorBoard.on_train_batch_end

    def counted(self, batch, logs=None):
        ours_calls.append(batch)
        hook(self, batch, logs)

    monkeypatch.setattr(tf.keras.callbacks.TensorBoard, "on_train_batch_end", counted)
    ours = _curves(TrainingCurves, tmp_path / "ours")
    calls = len(ours_calls)
    keras = _curves(tf.keras.callbacks.TensorBoard, tmp_path / "keras")
    assert [(tag, step) for tag, step, _ in ours] == [(t, s) for t in ("batch_accuracy", "batch_loss") for s in (50, 100)]
    assert [(tag, step) for tag, step, _ in ours] == [(tag, step) for tag, step, _ in keras]
    assert np.allclose([v for *_, v in ours], [v for *_, v in keras], rtol=1e-6)
    # Ours: the first step (TensorBoard writes the model's graph then) and the two points;
    # Keras' own: every step.
    assert calls == 3 and len(ours_calls) == 3 + 130
