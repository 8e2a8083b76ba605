"""tf.Transform preprocessing: the one definition of feature engineering.

Transform runs `preprocessing_fn` over the training split to compute its statistics (means,
variances, quantiles, vocabularies) and saves the result as a TF graph. The trainer embeds that
graph in the exported model, so serving applies exactly these transformations to raw features.

Every output is a dense rank-1 tensor ([batch]): float32 for the deep part, int64 ids for
categorical features, and the int64 label.
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from modules import code
from modules import features as F

_MISSING_TOKEN = "__missing__"
_CROSS_SEPARATOR = "_x_"


def _to_dense(x: tf.Tensor | tf.SparseTensor, default) -> tf.Tensor:
    """[batch, 0 or 1] sparse or [batch, 1] / [batch] dense -> [batch], missing -> default."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(tf.SparseTensor(x.indices, x.values, [x.dense_shape[0], 1]), default_value=default)
    if x.shape.rank == 2:
        x = tf.squeeze(x, axis=1)
    return x


def _present(x: tf.Tensor | tf.SparseTensor) -> tf.Tensor:
    """[batch] bool: the row has a value (and, for floats, it is not NaN)."""
    if isinstance(x, tf.SparseTensor):
        mask = _to_dense(
            tf.SparseTensor(x.indices, tf.ones_like(x.values, dtype=tf.bool), x.dense_shape),
            False,
        )
        values = _to_dense(x, tf.zeros([], x.dtype) if x.dtype != tf.string else "")
    else:
        values = _to_dense(x, None)
        mask = tf.ones_like(values, dtype=tf.bool)
    if values.dtype.is_floating:
        mask = tf.logical_and(mask, tf.logical_not(tf.math.is_nan(values)))
    return mask


def _numeric(key: str, x, outputs: dict) -> tf.Tensor:
    """z-score, quantile bucket and missing flag; returns the bucket ids (for crosses)."""
    present = _present(x)
    raw = tf.cast(_to_dense(x, 0), tf.float32)
    # Buckets come from the raw values: quantile boundaries are data values, so a value can sit
    # exactly on one, and log1p may differ by an ulp between batch shapes (vectorised vs scalar
    # kernels), which would put the same row in different buckets in training and serving.
    boundaries = tft.quantiles(tf.boolean_mask(raw, present), num_buckets=F.NUMERIC_FEATURES[key], epsilon=0.01)
    buckets = tf.cast(tft.apply_buckets(raw, boundaries), tf.int64) + 1
    buckets = tf.where(present, buckets, tf.zeros_like(buckets))
    outputs[F.bucket_name(key)] = buckets

    value = tf.math.log1p(tf.maximum(raw, 0.0)) if key in F.LOG_SCALED_FEATURES else raw
    # Mean and variance of the present values only, so imputation cannot bias them; a missing
    # value becomes 0, the mean's z-score. Both statistics come from the raw data in one pass:
    # scale_to_z_score over mean-imputed values would need the mean first, a second analysis
    # phase (another pass over the data and another traced graph).
    observed = tf.boolean_mask(value, present)
    deviation = value - tft.mean(observed)
    stddev = tf.sqrt(tft.var(observed))
    z_score = tf.where(stddev > 0, deviation / stddev, deviation)
    outputs[F.transformed_name(key)] = tf.where(present, z_score, tf.zeros_like(z_score))
    outputs[F.missing_flag_name(key)] = 1.0 - tf.cast(present, tf.float32)
    return buckets


def _int_categorical(key: str, x) -> tf.Tensor:
    """Values in [0, size) -> value + 1; missing or out of range -> 0."""
    value = tf.cast(_to_dense(x, -1), tf.int64)
    size = F.INT_CATEGORICAL_FEATURES[key]
    valid = tf.logical_and(value >= 0, value < size)
    return tf.where(valid, value + 1, tf.zeros_like(value))


def _hashed(key: str, x) -> tf.Tensor:
    present = _present(x)
    ids = tf.strings.to_hash_bucket_fast(tf.strings.as_string(_to_dense(x, 0)), F.HASHED_FEATURES[key])
    return tf.where(present, ids + 1, tf.zeros_like(ids))


def preprocessing_fn(inputs: dict, custom_config: dict | None = None) -> dict:
    """tf.Transform callback: raw features -> transformed features and label.

    `custom_config` (from the Transform component) carries the digest of the code the pipeline
    was compiled from: it must be this code's.
    """
    code.check((custom_config or {}).get("module_fingerprint"), code.TRANSFORM_CODE)
    outputs: dict[str, tf.Tensor] = {}
    # The string form of each feature that crosses are built from.
    cross_tokens: dict[str, tf.Tensor] = {}

    for key in F.NUMERIC_FEATURES:
        cross_tokens[key] = tf.strings.as_string(_numeric(key, inputs[key], outputs))

    for key, top_k in F.VOCAB_FEATURES.items():
        token = tf.where(_present(inputs[key]), _to_dense(inputs[key], ""), _MISSING_TOKEN)
        cross_tokens[key] = token
        outputs[F.transformed_name(key)] = tft.compute_and_apply_vocabulary(
            token, top_k=top_k, num_oov_buckets=F.VOCAB_OOV_BUCKETS, vocab_filename=key
        )

    for key in F.INT_CATEGORICAL_FEATURES:
        ids = _int_categorical(key, inputs[key])
        cross_tokens[key] = tf.strings.as_string(ids)
        outputs[F.transformed_name(key)] = ids

    for key in F.HASHED_FEATURES:
        outputs[F.transformed_name(key)] = _hashed(key, inputs[key])

    for name, (keys, buckets) in F.CROSSES.items():
        joined = tf.strings.join([cross_tokens[k] for k in keys], separator=_CROSS_SEPARATOR)
        outputs[F.transformed_name(name)] = tf.strings.to_hash_bucket_fast(joined, buckets)

    # The label needs columns that are absent at serving time; Transform's serving layer
    # prunes this output when they are not fed.
    label_inputs = {key: tf.cast(_to_dense(inputs[key], 0), tf.float32) for key in F.LABEL_INPUT_KEYS}
    outputs[F.LABEL_KEY] = F.make_label(label_inputs)
    return outputs
