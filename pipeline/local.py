"""Local runs: LocalDagRunner, Beam DirectRunner, ML Metadata on SQLite."""

from __future__ import annotations

import logging
import os
from typing import Any

from tfx import v1 as tfx

from pipeline import configs
from pipeline.pipeline import create_pipeline

logger = logging.getLogger(__name__)


def build_config(
    output_dir: str,
    data_root: str,
    schema_path: str,
    train_steps: int | None = None,
    **overrides: Any,
) -> configs.PipelineConfig:
    if train_steps is not None:
        overrides["train_steps"] = train_steps
    return configs.local_config(output_dir=output_dir, data_root=data_root, schema_path=schema_path, **overrides)


def metadata_connection(cfg: configs.PipelineConfig):
    os.makedirs(os.path.dirname(cfg.metadata_path), exist_ok=True)
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(cfg.metadata_path)


def run(cfg: configs.PipelineConfig) -> dict[str, Any]:
    """Runs the pipeline to completion and returns a summary of what it produced."""
    tfx.orchestration.LocalDagRunner().run(create_pipeline(cfg, metadata_connection(cfg)))
    return {"metadata_path": cfg.metadata_path}


def format_summary(summary: dict[str, Any]) -> str:
    return "\n".join(f"{k}: {v}" for k, v in summary.items())
