"""Pushed models on disk: find the newest version, load it, swap it in, validate requests.

The Pusher writes each blessed model to `<serving_model_dir>/<version>/` (version: a number
that grows). Clients send raw features; the model's `serving_raw` signature applies the
embedded Transform graph, so nothing here re-implements feature engineering.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from modules import features as F
from modules.contract import PREDICTION_KEY, RAW_SCHEMA_FILE, SERVING_RAW_SIGNATURE
from pipeline import lineage

logger = logging.getLogger(__name__)


class RequestError(ValueError):
    """A client error: the message says what is wrong with the request (HTTP 400)."""


class NoModelError(RuntimeError):
    """No loadable model version (HTTP 503)."""


def input_dtypes(fn) -> dict[str, tf.DType]:
    """The `serving_raw` signature's inputs: raw feature name -> dtype."""
    return {name: spec.dtype for name, spec in fn.structured_input_signature[1].items()}


def dense_columns(values: dict[str, list[Any]], dtypes: dict[str, tf.DType]) -> dict[str, np.ndarray]:
    """Raw values by feature -> the `serving_raw` signature's dense columns; None becomes the
    feature's missing-value sentinel (F.MISSING_STRING, NaN, F.MISSING_INT)."""
    out = {}
    for name, dtype in dtypes.items():
        column = values[name]
        if dtype == tf.string:
            out[name] = np.array([F.MISSING_STRING if v is None else v for v in column], dtype=object)
        elif dtype.is_floating:
            out[name] = np.array([math.nan if v is None else v for v in column], dtype=dtype.as_numpy_dtype)
        else:
            out[name] = np.array([F.MISSING_INT if v is None else v for v in column], dtype=dtype.as_numpy_dtype)
    return out


def list_versions(base_dir: str) -> list[int]:
    """Version numbers under `base_dir` that hold a SavedModel, ascending."""
    return lineage.serving_versions(base_dir)


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """One loaded version: the raw-feature signature and its input types."""

    version: int
    path: str
    fn: Any
    input_dtypes: dict[str, tf.DType]
    owner: Any = dataclasses.field(repr=False, default=None)  # keeps the signature's variables alive
    # Feature -> (min, max) from the raw schema stored with the model (RAW_SCHEMA_FILE).
    domains: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: str, version: int) -> LoadedModel:
        loaded = tf.saved_model.load(path)
        fn = loaded.signatures[SERVING_RAW_SIGNATURE]
        model = cls(version, path, fn, input_dtypes(fn), loaded, schema_domains(path))
        # One call initialises lookup tables, so the first request is not slow.
        model.predict([dict.fromkeys(model.input_dtypes)])
        return model

    def columns(self, instances: Sequence[dict[str, Any]]) -> dict[str, np.ndarray]:
        """Validated instances -> one dense column per input."""
        return dense_columns({name: [inst.get(name) for inst in instances] for name in self.input_dtypes}, self.input_dtypes)

    def predict_columns(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        return self.fn(**{k: tf.constant(v) for k, v in columns.items()})[PREDICTION_KEY].numpy()

    def predict(self, instances: Sequence[dict[str, Any]]) -> list[float]:
        return self.predict_columns(self.columns(instances)).tolist()


def request_instances(payload: Any) -> tuple[Any, str]:
    """A TF Serving predict body in either format -> ({"instances": rows}, response key).

    Row format: {"instances": [{feature: value}, ...]} answers {"predictions": [...]}.
    Columnar format: {"inputs": {feature: [values]}} (or {"inputs": [rows]}) answers
    {"outputs": [...]}, as TF Serving does. `signature_name`, if given, must be the signature
    this server serves (SERVING_RAW_SIGNATURE): `serving_default` takes serialized tf.Examples.
    """
    if not isinstance(payload, dict):
        raise RequestError('body must be a JSON object with an "instances" list')
    signature = payload.get("signature_name")
    if signature not in (None, "", SERVING_RAW_SIGNATURE):
        raise RequestError(
            f"signature_name {signature!r}: this server serves {SERVING_RAW_SIGNATURE!r} (raw features as JSON); "
            "'serving_default' takes serialized tf.Examples (batch prediction, or TF Serving)"
        )
    if "inputs" not in payload:
        return payload, "predictions"
    if "instances" in payload:
        raise RequestError('send "instances" (row format) or "inputs" (columnar format), not both')
    inputs = payload["inputs"]
    if isinstance(inputs, list):
        return {"instances": inputs}, "outputs"
    if not isinstance(inputs, dict) or not inputs:
        raise RequestError('"inputs" must be an object of feature -> list of values, or a list of rows')
    lengths = {name: len(values) if isinstance(values, list) else -1 for name, values in inputs.items()}
    if min(lengths.values()) < 0 or len(set(lengths.values())) != 1:
        raise RequestError(f'"inputs": every feature needs a list of the same length, got {lengths}')
    names = list(inputs)
    return {"instances": [dict(zip(names, row)) for row in zip(*(inputs[n] for n in names))]}, "outputs"


def schema_domains(model_dir: str) -> dict[str, tuple[float, float]]:
    """Feature -> (min, max) of the numeric domains in the raw schema stored with a model; {} for
    a model exported without one."""
    path = f"{model_dir.rstrip('/')}/{RAW_SCHEMA_FILE}"
    if not tf.io.gfile.exists(path):
        return {}
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    with tf.io.gfile.GFile(path) as f:
        schema = text_format.Parse(f.read(), schema_pb2.Schema())
    domains = {}
    for feature in schema.feature:
        domain = feature.int_domain if feature.HasField("int_domain") else feature.float_domain
        if feature.HasField("int_domain") or feature.HasField("float_domain"):
            low = domain.min if domain.HasField("min") else -math.inf
            high = domain.max if domain.HasField("max") else math.inf
            domains[feature.name] = (low, high)
    return domains


def validate_instances(
    payload: Any, input_dtypes: dict[str, tf.DType], max_instances: int, domains: dict[str, tuple[float, float]] | None = None
) -> list[dict[str, Any]]:
    """Checks a TF Serving / Vertex AI predict body; returns its instances.

    Each instance is an object with every input feature; null marks a missing value. Features
    the model does not read (the data's other columns) are accepted and ignored; anything else
    is an error, as are wrong types.
    """
    if not isinstance(payload, dict) or "instances" not in payload:
        raise RequestError('body must be a JSON object with an "instances" list')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise RequestError('"instances" must be a non-empty list')
    if len(instances) > max_instances:
        raise RequestError(f"too many instances: {len(instances)} (at most {max_instances} per request)")
    ignored = set(F.UNUSED_FEATURES)
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise RequestError(f"instance {i}: must be an object of feature -> value")
        unknown = sorted(set(inst) - set(input_dtypes) - ignored)
        if unknown:
            raise RequestError(f"instance {i}: unknown feature {unknown[0]!r}")
        for name, dtype in input_dtypes.items():
            if name not in inst:
                raise RequestError(f"instance {i}: missing feature {name!r} (send null for a missing value)")
            value = inst[name]
            if value is None:
                continue
            if dtype == tf.string:
                ok = isinstance(value, str)
            elif dtype.is_floating:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            else:
                ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok:
                kind = "string" if dtype == tf.string else "number" if dtype.is_floating else "integer"
                raise RequestError(f"instance {i}: feature {name!r} must be a {kind} or null, got {_shown(value)}")
            if dtype != tf.string and not dtype.min <= value <= dtype.max:
                # Outside the tensor type: it would fail the whole batched model call.
                raise RequestError(f"instance {i}: feature {name!r} is out of the {dtype.name} range: {_shown(value)}")
            if domains and name in domains and not domains[name][0] <= value <= domains[name][1]:
                low, high = domains[name]
                raise RequestError(
                    f"instance {i}: feature {name!r} is {_shown(value)}, outside the schema's domain [{low:g}, {high:g}]"
                )
    return instances


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class ModelStore:
    """The model being served: the newest version under `base_dir`, or a pinned one.

    `refresh()` loads a newer version (if any) and swaps it in atomically; requests already
    running keep the version they started with.
    """

    # A version that fails to load this many times (a broken push) is skipped.
    MAX_LOAD_ATTEMPTS = 3

    def __init__(self, base_dir: str, pinned_version: int | None = None, single_version: int | None = None):
        """`base_dir` holds numbered versions (a Pusher's directory); with `single_version`, it is
        one SavedModel itself (Vertex's AIP_STORAGE_URI), served as that version."""
        self.base_dir = base_dir
        self.pinned_version = pinned_version
        self.single_version = single_version
        self._current: LoadedModel | None = None
        self._lock = threading.Lock()
        self._failures: dict[int, int] = {}

    @property
    def current(self) -> LoadedModel:
        model = self._current
        if model is None:
            raise NoModelError(f"no model loaded from {self.base_dir}")
        return model

    @property
    def ready(self) -> bool:
        return self._current is not None

    def refresh(self) -> bool:
        """Loads the wanted version if it is not the one served; True when it swapped."""
        if self.single_version is not None:
            versions = [self.single_version] if tf.io.gfile.exists(os.path.join(self.base_dir, "saved_model.pb")) else []
        else:
            versions = list_versions(self.base_dir)
        if self.pinned_version is not None:
            wanted = self.pinned_version if self.pinned_version in versions else None
        else:
            wanted = next((v for v in reversed(versions) if self._failures.get(v, 0) < self.MAX_LOAD_ATTEMPTS), None)
        if wanted is None or (self._current is not None and self._current.version == wanted):
            return False
        try:
            path = self.base_dir if self.single_version is not None else os.path.join(self.base_dir, str(wanted))
            model = LoadedModel.load(path, wanted)
        except Exception as e:  # noqa: BLE001 - a half-copied or broken push must not stop serving
            self._failures[wanted] = self._failures.get(wanted, 0) + 1
            logger.warning("cannot load model version %s (attempt %d): %s", wanted, self._failures[wanted], e)
            return False
        with self._lock:
            self._current = model
        logger.info("serving model version %s from %s", wanted, model.path)
        return True
