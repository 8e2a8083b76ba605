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

import dataclasses
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
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


# --- One validator for every way in ----------------------------------------------------------
# REST (serving/server.py), batch prediction (serving/batch.py) and the Vertex AI endpoint
# (serving/vertex.py) check rows here, and nowhere else: a row refused by one is refused by the
# others with the same message. Column-wise, in numpy: no TensorFlow call per value.

STRING, NUMBER, INTEGER = "string", "number", "integer"
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38
_SHOWN = 40  # characters of a value or a name quoted in a message


def shown(value: Any) -> str:
    """A value (or name) as quoted in an error message, at most ~40 characters."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value) if not isinstance(value, str) else repr(value[:_SHOWN])
    return text if len(text) <= _SHOWN + 2 else text[: _SHOWN - 1] + "..."


def kind_of(dtype: tf.DType) -> str:
    return STRING if dtype == tf.string else NUMBER if dtype.is_floating else INTEGER


@dataclasses.dataclass(frozen=True)
class RowContract:
    """What a row must be: a value (or null) of the right kind for every feature the model
    reads, within the tensor type's range and the schema's domain; nothing outside the
    schema's columns.

    Attributes:
      kinds: feature -> STRING, NUMBER or INTEGER (the raw-feature signature's inputs).
      domains: feature -> (min, max), from the raw schema stored with the model.
      columns: every column the schema knows (inputs, label sources, unused columns): others
        are unknown.
    """

    kinds: dict[str, str]
    domains: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    columns: frozenset[str] = frozenset()

    @classmethod
    def for_model(cls, input_dtypes: Mapping[str, tf.DType], domains: Mapping[str, tuple[float, float]]) -> RowContract:
        # In name order: a row with several problems is refused naming the same one (the
        # first), whichever way in built the contract (a signature's inputs have no order).
        kinds = {name: kind_of(input_dtypes[name]) for name in sorted(input_dtypes)}
        known = frozenset([*kinds, *F.LABEL_SOURCE_KEYS, *F.UNUSED_FEATURES])
        return cls(kinds, dict(domains), known)

    def unknown(self, names: Iterable[str]) -> list[str]:
        return sorted(set(names) - self.columns)

    def missing(self, names: Iterable[str]) -> list[str]:
        return [n for n in self.kinds if n not in set(names)]

    def check(self, columns: Mapping[str, Column]) -> list[str | None]:
        """Per row: None, or its first problem, features in name order ("feature 'fare' must
        be ..."). Every feature the model reads must be in `columns`."""
        rows = len(next(iter(columns.values()))) if columns else 0
        problems: list[str | None] = [None] * rows
        for name, kind in self.kinds.items():
            column = columns[name]
            for i, message in column.problems(name, kind, self.domains.get(name)):
                if problems[i] is None:
                    problems[i] = message
        return problems


@dataclasses.dataclass
class Column:
    """One feature's values for a batch of rows, parsed once: `numbers` (float64, NaN where
    missing or not a number) for numeric features, `strings` for string features, `missing`
    where null/empty, and `wrong`: row -> the value that is not of the feature's kind."""

    missing: np.ndarray
    numbers: np.ndarray | None = None
    strings: list[str | None] | None = None
    wrong: dict[int, Any] = dataclasses.field(default_factory=dict)
    # Integers beyond int64, kept exact for the message (float64 cannot hold them).
    huge: dict[int, int] = dataclasses.field(default_factory=dict)
    # Integers float64 does not hold exactly (beyond 2**53), kept for the model.
    exact: dict[int, int] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.missing)

    @classmethod
    def from_json(cls, values: Sequence[Any], kind: str) -> Column:
        """JSON values (None, str, int, float, bool) of one feature."""
        n = len(values)
        missing = np.fromiter((v is None for v in values), bool, n)
        wrong: dict[int, Any] = {}
        if kind == STRING:
            strings: list[str | None] = []
            for i, v in enumerate(values):
                if v is None or type(v) is str:
                    strings.append(v)
                else:
                    strings.append(None)
                    wrong[i] = v
            return cls(missing, strings=strings, wrong=wrong)
        numbers = np.full(n, np.nan)
        huge: dict[int, int] = {}
        exact: dict[int, int] = {}
        for i, v in enumerate(values):
            t = type(v)
            if t is float:
                numbers[i] = v
            elif t is int:
                if kind == NUMBER:
                    try:
                        numbers[i] = float(v)  # range-checked below, as float32
                    except OverflowError:
                        huge[i] = v
                elif INT64_MIN <= v <= INT64_MAX:
                    numbers[i] = v
                    if abs(v) > 2**53:
                        exact[i] = v
                else:
                    huge[i] = v
            elif v is not None:
                wrong[i] = v
        return cls(missing, numbers=numbers, wrong=wrong, huge=huge, exact=exact)

    @classmethod
    def from_floats(cls, numbers: np.ndarray) -> Column:
        """A numeric feature's CSV cells as a CSV reader parsed them into float64, NaN where a
        cell was empty, from a reader that refuses any cell that is not a number ("nan" and
        "n/a" included: serving/batch.py then reads the chunk as text, `from_text`)."""
        return cls(np.isnan(numbers), numbers=numbers)

    @classmethod
    def from_text(cls, texts: Any, kind: str) -> Column:
        """CSV cells of one feature (a pandas Series of str, "" or NaN for empty)."""
        import pandas as pd

        text = texts.fillna("").astype(str)
        missing = (text == "").to_numpy()
        if kind == STRING:
            return cls(missing, strings=[None if m else t for m, t in zip(missing, text.tolist())])
        numbers = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(dtype=float)
        # "nan" and "inf" parse as numbers: refused below as not finite, like JSON's NaN.
        suspects = np.flatnonzero(np.isnan(numbers) & ~missing)  # few: look at each
        wrong = {int(i): text.iat[int(i)] for i in suspects if text.iat[int(i)].strip().lower() not in ("nan", "-nan", "+nan")}
        return cls(missing, numbers=numbers, wrong=wrong)

    def problems(self, name: str, kind: str, domain: tuple[float, float] | None) -> Iterator[tuple[int, str]]:
        """(row, message) for each value this feature does not accept."""
        what = f"feature {shown(name)}"
        article = "an" if kind == INTEGER else "a"
        for i, value in self.wrong.items():
            yield i, f"{what} must be {article} {kind} or null, got {shown(value)}"
        if kind == STRING:
            assert self.strings is not None
            for i, text in enumerate(self.strings):
                if text is not None and not text.isascii():
                    try:
                        text.encode("utf-8")
                    except UnicodeEncodeError:
                        yield i, f"{what} is not valid text (an unpaired surrogate): {shown(text)}"
            return
        assert self.numbers is not None
        x = self.numbers
        for i, v in self.huge.items():
            yield i, f"{what} is out of the {'int64' if kind == INTEGER else 'float32'} range: {shown(v)}"
        reported = np.zeros(len(x), bool)
        reported[[*self.wrong, *self.huge]] = True
        present = ~self.missing & ~reported
        for i in np.flatnonzero(present & ~np.isfinite(x)):
            yield int(i), f"{what} must be a finite number, got {shown(float(x[i]))}"
        finite = present & np.isfinite(x)
        with np.errstate(invalid="ignore"):
            if kind == INTEGER:
                fractional = finite & (x != np.floor(x))
                for i in np.flatnonzero(fractional):
                    yield int(i), f"{what} must be an integer or null, got {shown(float(x[i]))}"
                # float64 compares with 2**63 exactly; int64 ends one below it.
                beyond = finite & ~fractional & ((x < -(2.0**63)) | (x >= 2.0**63))
                beyond[list(self.exact)] = False
                finite = finite & ~fractional & ~beyond
                limit = "int64"
            else:
                beyond = finite & (np.abs(x) > FLOAT32_MAX)
                finite = finite & ~beyond
                limit = "float32"
            for i in np.flatnonzero(beyond):
                yield int(i), f"{what} is out of the {limit} range: {shown(float(x[i]))}"
            if domain is not None:
                low, high = domain
                outside = finite & ((x < low) | (x > high))
                for i in np.flatnonzero(outside):
                    value = x[i]
                    text = shown(int(value)) if kind == INTEGER else shown(float(value))
                    yield int(i), f"{what} is {text}, outside the schema's domain [{low:g}, {high:g}]"

    def dense(self, kind: str, dtype: Any) -> np.ndarray:
        """The signature's dense column (valid rows only are meaningful): None becomes the
        feature's missing-value sentinel."""
        if kind == STRING:
            assert self.strings is not None
            return np.array([F.MISSING_STRING if v is None else v for v in self.strings], dtype=object)
        assert self.numbers is not None
        x = np.where(np.isfinite(self.numbers), self.numbers, np.nan)
        if kind == NUMBER:
            return x.astype(dtype)
        with np.errstate(invalid="ignore"):
            filled = np.where(np.isnan(x) | (np.abs(x) >= 2.0**63), F.MISSING_INT, x).astype(dtype)
        for i, v in self.exact.items():
            filled[i] = v
        return filled
