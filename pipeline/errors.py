"""The errors a user can cause, in a module that imports nothing heavy: the CLI catches them
without importing TensorFlow, TFX or Beam (a usage error answers at once)."""

from __future__ import annotations

from collections.abc import Sequence


class ConfigError(ValueError):
    """A configuration value is missing or invalid. The message names the field."""


class DataValidationError(RuntimeError):
    """The data has anomalies nobody accepted; `rows` lists them."""

    def __init__(self, rows: Sequence[dict], accepted: Sequence[dict] = ()):
        self.rows = list(rows)
        self.accepted = list(accepted)
        super().__init__(
            f"data validation failed: {len(self.rows)} anomal{'y' if len(self.rows) == 1 else 'ies'}; "
            "nothing was trained or pushed.\n"
            + format_rows(self.rows)
            + "\nFix the data (or the schema, if the change is expected), or accept these anomalies "
            "deliberately with --accept-anomalies FEATURE[:KIND]."
        )


def format_rows(rows: Sequence[dict]) -> str:
    """A plain table: span, split, feature, kind, description."""
    if not rows:
        return "no anomalies"
    cols = [c for c in ("span", "split", "feature", "kind", "description") if any(c in r for r in rows)]
    table = [cols] + [[str(r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line[:-1], widths)) + "  " + line[-1] for line in table)
