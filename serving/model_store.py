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
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from modules.contract import PREDICTION_KEY, RAW_SCHEMA_FILE, SERVING_RAW_SIGNATURE, Column, RowContract, shown
from pipeline import lineage

logger = logging.getLogger(__name__)


class RequestError(ValueError):
    """A client error: the message says what is wrong with the request (HTTP 400)."""


class NoModelError(RuntimeError):
    """No loadable model version (HTTP 503)."""


def input_dtypes(fn) -> dict[str, tf.DType]:
    """The `serving_raw` signature's inputs: raw feature name -> dtype."""
    return {name: spec.dtype for name, spec in fn.structured_input_signature[1].items()}


@dataclasses.dataclass
class Rows:
    """Validated rows as the signature's dense columns (what one model call takes)."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def slice(self, start: int, stop: int) -> Rows:
        return Rows({k: v[start:stop] for k, v in self.columns.items()})

    @staticmethod
    def concat(parts: Sequence[Rows]) -> Rows:
        if len(parts) == 1:
            return parts[0]
        return Rows({k: np.concatenate([p.columns[k] for p in parts]) for k in parts[0].columns})


def dense_rows(columns: Mapping[str, Column], contract: RowContract, dtypes: Mapping[str, tf.DType]) -> Rows:
    """Parsed columns -> the signature's dense columns (None becomes the missing sentinel)."""
    return Rows({name: columns[name].dense(contract.kinds[name], dtypes[name].as_numpy_dtype) for name in dtypes})


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
    # What a row must be: the signature's inputs and the domains of the raw schema stored with
    # the model (RAW_SCHEMA_FILE); the one validator REST, batch and Vertex share.
    contract: RowContract = dataclasses.field(default_factory=lambda: RowContract({}))

    @classmethod
    def load(cls, path: str, version: int) -> LoadedModel:
        loaded = tf.saved_model.load(path)
        fn = loaded.signatures[SERVING_RAW_SIGNATURE]
        dtypes = input_dtypes(fn)
        model = cls(version, path, fn, dtypes, loaded, RowContract.for_model(dtypes, schema_domains(path)))
        # One call initialises lookup tables, so the first request is not slow.
        model.predict([dict.fromkeys(model.input_dtypes)])
        return model

    def rows(self, instances: Sequence[dict[str, Any]]) -> Rows:
        """Instances (JSON objects) -> validated dense rows; RequestError names the first
        problem."""
        return validate_instances({"instances": list(instances)}, self, max_instances=len(instances) or 1)

    def predict_rows(self, rows: Rows) -> np.ndarray:
        return self.fn(**{k: tf.constant(v) for k, v in rows.columns.items()})[PREDICTION_KEY].numpy()

    def predict(self, instances: Sequence[dict[str, Any]]) -> list[float]:
        return self.predict_rows(self.rows(instances)).tolist()


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


def validate_instances(payload: Any, model: LoadedModel, max_instances: int) -> Rows:
    """Checks a TF Serving / Vertex AI predict body against the model's contract; returns its
    instances as dense rows. RequestError names the first problem (bounded in size).

    Each instance is an object with every input feature; null marks a missing value. The
    schema's other columns (label sources, unused columns) are accepted and ignored; anything
    else is an error, as are values the contract refuses (modules/contract.py).
    """
    if not isinstance(payload, dict) or "instances" not in payload:
        raise RequestError('body must be a JSON object with an "instances" list')
    instances = payload["instances"]
    if not isinstance(instances, list) or not instances:
        raise RequestError('"instances" must be a non-empty list')
    if len(instances) > max_instances:
        raise RequestError(f"too many instances: {len(instances)} (at most {max_instances} per request)")
    contract = model.contract
    for i, inst in enumerate(instances):
        if not isinstance(inst, dict):
            raise RequestError(f"instance {i}: must be an object of feature -> value")
        if len(inst) != len(contract.kinds) or not all(k in inst for k in contract.kinds):
            unknown = contract.unknown(inst)
            if unknown:
                raise RequestError(f"instance {i}: unknown feature {shown(unknown[0])}")
            missing = contract.missing(inst)
            if missing:
                raise RequestError(f"instance {i}: missing feature {shown(missing[0])} (send null for a missing value)")
    columns = {name: Column.from_json([inst[name] for inst in instances], kind) for name, kind in contract.kinds.items()}
    for i, problem in enumerate(contract.check(columns)):
        if problem is not None:
            raise RequestError(f"instance {i}: {problem}")
    return dense_rows(columns, contract, model.input_dtypes)


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
