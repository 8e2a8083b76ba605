"""The serving contract: what the exported model takes and returns, beside the feature spec.

Serving (`serving/`), evaluation (`pipeline/eval_config.py`) and the Trainer's export all read
these names from here, so a client, TFMA and the SavedModel cannot disagree, and nothing that
serves or evaluates a model imports the Trainer.

Signatures of the exported SavedModel:
  * `serving_default`: serialized tf.Example -> {PREDICTION_KEY} (TF Serving, Vertex batch, TFMA);
  * SERVING_RAW_SIGNATURE: one dense [batch] tensor per raw feature -> {PREDICTION_KEY} (JSON
    clients); a missing value is NaN, features.MISSING_INT or features.MISSING_STRING;
  * TRANSFORM_SIGNATURE: serialized tf.Example -> transformed features, label included (TFMA
    reads the label from it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from modules import features as F

PREDICTION_KEY = "probability"
# The raw schema the model was trained with, stored beside it (assets.extra/): its domains are
# the ranges a server accepts, so a fare of -50 is refused rather than scored.
RAW_SCHEMA_FILE = "assets.extra/raw_schema.pbtxt"
SERVING_RAW_SIGNATURE = "serving_raw"
TRANSFORM_SIGNATURE = "transform_features"


def serving_raw_spec(raw_feature_spec: Mapping[str, Any]) -> dict[str, tf.TensorSpec]:
    """The raw-feature signature's inputs: one dense [batch] tensor per feature the model reads,
    typed as in the raw feature spec (tf.Transform's `raw_feature_spec()`)."""
    return {key: tf.TensorSpec([None], raw_feature_spec[key].dtype, name=key) for key in F.raw_input_keys()}
