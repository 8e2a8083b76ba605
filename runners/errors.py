"""Errors of a local run, importable without the runner (and TFX) behind them."""

from __future__ import annotations


class RunFailed(RuntimeError):
    """A component failed; the message names it and the cause. Nothing after it ran."""


class StoreBusy(RuntimeError):
    """Another local run holds the metadata store."""
