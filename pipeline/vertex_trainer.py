"""The Trainer and the Tuner on Vertex AI Training, resolving their cross-run inputs as the
local ones do.

A module of its own because TFX's Google Cloud extension imports aiplatform (seconds), which
local runs do not need.
"""

from __future__ import annotations

from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_executor
from tfx.extensions.google_cloud_ai_platform.tuner import executor as vertex_tuner_executor

from pipeline.resolution import ResolvingTrainer, ResolvingTuner


class Executor(ResolvingTrainer, vertex_executor.GenericExecutor):
    """Adds the warm-start model and the newest tuning, then runs training as a CustomJob."""


class TunerExecutor(ResolvingTuner, vertex_tuner_executor.Executor):
    """The trials train on the window, as one Vertex AI Training job with Vizier choosing them."""
