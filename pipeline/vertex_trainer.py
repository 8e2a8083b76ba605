"""The Trainer on Vertex AI Training, resolving its cross-run inputs as the local one does.

A module of its own because TFX's Google Cloud extension imports aiplatform (seconds), which
local runs do not need.
"""

from __future__ import annotations

from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_executor

from pipeline.resolution import ResolvingTrainer


class Executor(ResolvingTrainer, vertex_executor.GenericExecutor):
    """Adds the warm-start model and the newest tuning, then runs training as a CustomJob."""
