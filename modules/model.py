"""The wide & deep Keras model (Keras 2 via tf_keras; TFX 1.16's Keras paths need it).

Wide: a linear model over every categorical id, feature crosses included (an Embedding of
width 1 per feature is a sparse linear layer). Deep: the dense features plus learned
embeddings of the uncrossed categorical features, through a ReLU MLP. The two logits add up
before the sigmoid, as in Cheng et al., "Wide & Deep Learning for Recommender Systems" (2016).
"""

from __future__ import annotations

import tf_keras as keras

from modules import features as F
from modules.hparams import HParams


def _autograph_skips_tf_keras() -> None:
    """Makes AutoGraph leave tf_keras's own code alone, as it leaves `keras`'s.

    TensorFlow's AutoGraph rules skip the `keras` package, whose internals are graph-safe
    Python, but not `tf_keras`, the same Keras 2 code under the name TF 2.16 gives it. Without
    this rule the first trace of the training step transpiles ~350 tf_keras functions: 16 s of
    the Trainer's time on 2 cores, against 2 s with it (bench/RESULTS.md). Graph semantics are
    unchanged; our own code has no tensor-dependent Python control flow to convert.
    The rule list is internal to TensorFlow, hence the guard.
    """
    try:
        from tensorflow.python.autograph.core import config, config_lib
    except ImportError:
        return
    rule = config_lib.DoNotConvert("tf_keras")
    if not any(isinstance(r, config_lib.DoNotConvert) and r.matches("tf_keras") for r in config.CONVERSION_RULES):
        config.CONVERSION_RULES = (rule, *config.CONVERSION_RULES)


_autograph_skips_tf_keras()


def build_model(hp: HParams) -> keras.Model:
    """Returns a compiled model taking the transformed features, returning P(label = 1)."""
    cardinalities = F.categorical_cardinalities()
    crosses = F.cross_names()
    inputs = {name: keras.Input(shape=(1,), name=name, dtype="float32") for name in F.dense_feature_names()}
    inputs.update({name: keras.Input(shape=(1,), name=name, dtype="int64") for name in cardinalities})

    wide_regularizer = keras.regularizers.l2(hp.wide_l2) if hp.wide_l2 else None
    deep_regularizer = keras.regularizers.l2(hp.deep_l2) if hp.deep_l2 else None
    wide_terms = [
        keras.layers.Flatten()(
            keras.layers.Embedding(card, 1, embeddings_regularizer=wide_regularizer, name=f"wide_{name}")(inputs[name])
        )
        for name, card in cardinalities.items()
    ]
    wide_logit = keras.layers.Add(name="wide_logit")(wide_terms)

    deep_parts = [inputs[name] for name in F.dense_feature_names()]
    for name, card in cardinalities.items():
        if name in crosses:
            continue
        dim = min(hp.embedding_dim, card)
        deep_parts.append(
            keras.layers.Flatten()(
                keras.layers.Embedding(card, dim, embeddings_regularizer=deep_regularizer, name=f"emb_{name}")(inputs[name])
            )
        )
    x = keras.layers.Concatenate(name="deep_input")(deep_parts)
    for i, units in enumerate(hp.hidden_units):
        x = keras.layers.Dense(units, activation="relu", kernel_regularizer=deep_regularizer, name=f"deep_{i}")(x)
        if hp.dropout:
            x = keras.layers.Dropout(hp.dropout)(x)
    deep_logit = keras.layers.Dense(1, name="deep_logit")(x)

    logit = keras.layers.Add(name="logit")([wide_logit, deep_logit])
    probability = keras.layers.Activation("sigmoid", name="probability")(logit)
    model = keras.Model(inputs=inputs, outputs=probability, name="wide_and_deep")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=hp.learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
    )
    # The optimizer's variables now, not in the first training step: a tf.function that
    # creates variables on its first call is traced a second time (TensorFlow's
    # polymorphic_function._call), ~3 s of the Trainer's and of every tuning trial's.
    model.optimizer.build(model.trainable_variables)
    return model
