"""Hyperparameters as a typed, validated, frozen dataclass.

The pipeline passes `HParams.to_dict()` through the Trainer's `custom_config` (which must be
JSON-serializable); `run_fn` reads it back with `HParams.from_dict`, so a typo or a bad value
fails loudly before training starts, naming the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

_TYPES: dict[str, type | tuple[type, ...]] = {"int": int, "float": (int, float), "bool": bool, "tuple[int, ...]": tuple}


@dataclasses.dataclass(frozen=True)
class HParams:
    """Model and optimisation settings. Training length is in steps (TrainArgs), not here.

    The defaults come from a sweep on the taxi data (README, "Model quality"): with ~10k
    training rows the crosses and embeddings overfit within a few hundred steps unless both
    parts are L2-regularised; with these values eval accuracy and AUC stay flat from 500 to
    3000 steps instead of peaking early.
    """

    batch_size: int = 1024
    learning_rate: float = 0.002
    hidden_units: tuple[int, ...] = (128, 64)
    embedding_dim: int = 8
    dropout: float = 0.2
    # L2 penalties: the wide part's per-feature weights; the deep part's embeddings and kernels.
    wide_l2: float = 0.01
    deep_l2: float = 0.003
    # Validation every this many steps (the eval split's AUC: what early stopping watches).
    steps_per_eval: int = 100
    # Early stopping, in steps: stop when the eval AUC has not improved by at least
    # early_stopping_min_delta for this many steps, and keep the best weights. 0: train the
    # whole budget (TrainArgs.num_steps), as before.
    early_stopping_patience: int = 300
    early_stopping_min_delta: float = 0.001
    # Start from the latest blessed model's weights when the pipeline provides one.
    warm_start: bool = True
    # Seeds weight initialisation, dropout and the input shuffle: the same data, code and
    # hyperparameters train the same model (up to float non-associativity across threads).
    seed: int = 42

    def __post_init__(self) -> None:
        if isinstance(self.hidden_units, list):
            object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            # bool is an int subclass: accept it only where a bool is wanted.
            expected = _TYPES[str(field.type)]
            if isinstance(value, bool) != (field.type == "bool") or not isinstance(value, expected):
                raise ValueError(f"hparams.{field.name} must be {field.type}, got {value!r}")
        checks = {
            "batch_size": self.batch_size > 0,
            "learning_rate": 0 < self.learning_rate < 1,
            "hidden_units": len(self.hidden_units) > 0
            and all(isinstance(u, int) and not isinstance(u, bool) and u > 0 for u in self.hidden_units),
            "embedding_dim": self.embedding_dim > 0,
            "dropout": 0 <= self.dropout < 1,
            "wide_l2": self.wide_l2 >= 0,
            "deep_l2": self.deep_l2 >= 0,
            "steps_per_eval": self.steps_per_eval > 0,
            "early_stopping_patience": self.early_stopping_patience >= 0,
            "early_stopping_min_delta": self.early_stopping_min_delta >= 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"hparams.{name} is out of range: {getattr(self, name)!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> HParams:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown hparams: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden_units"] = list(self.hidden_units)
        return d

    def replace(self, **changes: Any) -> HParams:
        return dataclasses.replace(self, **changes)


# The search space of the Tuner (modules/tuning.py), next to the defaults it searches around:
# name -> ("log", low, high) for a float sampled on a log scale, ("linear", low, high, step), or
# ("choice", [values]). hidden_units choices are written "128,64" (KerasTuner takes scalars).
SEARCH_SPACE: dict[str, tuple] = {
    "learning_rate": ("log", 5e-4, 1e-2),
    "hidden_units": ("choice", ["128,64", "256,128", "64,32", "128,64,32"]),
    "embedding_dim": ("choice", [4, 8, 16]),
    "dropout": ("linear", 0.0, 0.4, 0.1),
    "wide_l2": ("log", 1e-3, 3e-2),
    "deep_l2": ("log", 3e-4, 1e-2),
    "batch_size": ("choice", [512, 1024]),
}


def from_tuned(base: HParams, values: Mapping[str, Any]) -> HParams:
    """`base` with the values a tuning chose (KerasTuner's HyperParameters.values)."""
    changes = {k: v for k, v in values.items() if k in SEARCH_SPACE}
    if isinstance(changes.get("hidden_units"), str):
        changes["hidden_units"] = tuple(int(u) for u in changes["hidden_units"].split(","))
    for name in ("embedding_dim", "batch_size"):
        if name in changes:
            changes[name] = int(changes[name])
    for name in ("learning_rate", "dropout", "wide_l2", "deep_l2"):
        if name in changes:
            changes[name] = float(changes[name])
    return base.replace(**changes)
