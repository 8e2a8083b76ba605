"""Local runs: LocalDagRunner, Beam DirectRunner, ML Metadata on SQLite."""

from __future__ import annotations

import logging
import os
from typing import Any

from tfx import v1 as tfx

from pipeline import configs, metadata
from pipeline import pipeline as P

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
    config = metadata.connection_config(cfg.metadata_uri)
    if config.HasField("postgresql"):
        # It would fail part-way through the run, at the first property holding a backslash.
        raise configs.ConfigError(
            "metadata_uri: ml-metadata 1.16's PostgreSQL backend cannot store TFX runs (it mis-quotes "
            "strings containing a backslash); use a SQLite path or mysql://"
        )
    if config.HasField("sqlite"):
        os.makedirs(os.path.dirname(os.path.abspath(config.sqlite.filename_uri)), exist_ok=True)
    return config


def run(cfg: configs.PipelineConfig) -> dict[str, Any]:
    """Runs the pipeline to completion and returns `summarize()` of the run."""
    tfx.orchestration.LocalDagRunner().run(P.create_pipeline(cfg, metadata_connection(cfg)))
    return summarize(cfg)


def summarize(cfg: configs.PipelineConfig) -> dict[str, Any]:
    """What the latest run did: component states, blessing, metrics, the pushed model."""
    store = metadata.open_store(cfg.metadata_uri)
    latest = metadata.Metadata(store, cfg.pipeline_name).latest_run()
    blessing = latest.output(P.EVALUATOR, "blessing")
    evaluation = latest.output(P.EVALUATOR, "evaluation")
    pushed = latest.output(P.PUSHER, "pushed_model")
    was_pushed = bool(pushed is not None and metadata.prop(pushed, "pushed"))
    return {
        "run_id": latest.run_id,
        "status": latest.status,
        "components": {name: c.state for name, c in latest.components.items()},
        "blessed": bool(blessing is not None and metadata.prop(blessing, "blessed")),
        "metrics": metadata.overall_metrics(evaluation.uri) if evaluation is not None else {},
        "pushed_model": metadata.prop(pushed, "pushed_destination") if was_pushed else None,
        "serving_model_dir": cfg.serving_model_dir,
        "metadata": metadata.redact(cfg.metadata_uri),
    }


def format_summary(summary: dict[str, Any]) -> str:
    metrics = summary["metrics"]
    shown = ("auc", "binary_accuracy", "precision", "recall", "example_count")
    lines = [
        f"run {summary['run_id']}: {summary['status']}",
        "components: " + ", ".join(f"{k}={v}" for k, v in summary["components"].items()),
        "eval metrics: " + ", ".join(f"{k}={metrics[k]:.4f}" if k != "example_count" else f"{k}={int(metrics[k])}" for k in shown if k in metrics),
        f"blessed: {'yes' if summary['blessed'] else 'no'}",
        f"pushed model: {summary['pushed_model'] or 'none (not blessed, nothing pushed)'}",
        f"metadata store: {summary['metadata']}",
    ]
    if "wall_seconds" in summary:
        lines.append(f"wall time: {summary['wall_seconds']} s")
    return "\n".join(lines)
