"""Anomalies a user accepts: `--accept-anomalies FEATURE`, `FEATURE:KIND` or `*`.

Imports nothing heavy: the CLI checks the values before TensorFlow loads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_SPEC = re.compile(r"^(\*|[A-Za-z0-9_.\-()]+)(:[A-Z0-9_]+)?$")


def parse_accept(specs: Iterable[str]) -> tuple[str, ...]:
    """Validates --accept-anomalies values: FEATURE, FEATURE:KIND, or * (everything)."""
    out = []
    for spec in specs:
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            if not _SPEC.match(part):
                raise ValueError(f"--accept-anomalies: {part!r} is not FEATURE, FEATURE:KIND or *")
            out.append(part)
    return tuple(out)


def is_accepted(row: dict, accept: Sequence[str]) -> bool:
    for spec in accept:
        feature, _, kind = spec.partition(":")
        if feature in ("*", row["feature"]) and kind in ("", row["kind"]):
            return True
    return False


def split_accepted(rows: Sequence[dict], accept: Sequence[str]) -> tuple[list[dict], list[dict]]:
    """(rows nobody accepted, accepted rows)."""
    rejected = [r for r in rows if not is_accepted(r, accept)]
    return rejected, [r for r in rows if is_accepted(r, accept)]
