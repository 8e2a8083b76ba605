"""Local runs: LocalDagRunner, Beam DirectRunner, ML Metadata on SQLite.

Importing this module loads neither TensorFlow nor TFX (10 s on a busy machine): `run` loads
them under its progress lines, so the command's first line comes at once.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import logging
import os
from collections.abc import Iterator
from typing import Any

from ml_metadata.proto import metadata_store_pb2

from ops import queries
from ops.evaluation import overall_metrics
from pipeline import beam_speed, configs
from pipeline import stores as mlmd_store
from pipeline.errors import DataValidationError
from runners.errors import RunFailed, StoreBusy
from runners.progress import Progress

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def exclusive_store(metadata_uri: str) -> Iterator[None]:
    """One local run at a time per SQLite store: a second run started while one is going fails
    at once, before it writes anything, instead of interleaving writes with the first. The
    lock is a file beside the store and is released by the kernel if the process dies."""
    config = mlmd_store.connection_config(metadata_uri)
    if not config.HasField("sqlite"):
        yield  # a MySQL server serializes writes itself
        return
    path = config.sqlite.filename_uri + ".lock"
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise StoreBusy(
                f"metadata store {config.sqlite.filename_uri} is in use by a running pipeline ({holder}); "
                "wait for it to finish, or use another --output"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}, started {datetime.datetime.now().isoformat(timespec='seconds')}")
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()
            fcntl.flock(lock, fcntl.LOCK_UN)


def store_uri(cfg: configs.PipelineConfig) -> str:
    """The local run's metadata store (a local config always has one)."""
    if not cfg.metadata_uri:
        raise configs.ConfigError("metadata_uri: a local run needs a metadata store")
    return cfg.metadata_uri


def cancel_abandoned(cfg: configs.PipelineConfig) -> list[int]:
    """Marks executions left RUNNING by a process that died (killed, out of memory) as
    CANCELED. Call only while holding `exclusive_store`: then no execution can really be
    running. Their partial outputs were never published, so a re-run recomputes them and
    reuses everything that finished (the cache)."""
    if not os.path.exists(cfg.metadata_uri or ""):
        return []
    db = mlmd_store.open_store(store_uri(cfg), read_only=False)
    stale = [e for e in db.get_executions() if e.last_known_state == metadata_store_pb2.Execution.RUNNING]
    for e in stale:
        e.last_known_state = metadata_store_pb2.Execution.CANCELED
        e.custom_properties["canceled_reason"].string_value = "the run's process exited while this was running"
    if stale:
        db.put_executions(stale)
        logger.warning("marked %d execution(s) abandoned by an earlier run as CANCELED", len(stale))
    return [e.id for e in stale]


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


def check_store(cfg: configs.PipelineConfig) -> None:
    """Refuses a store a local run cannot use, before anything is written: malformed,
    PostgreSQL, or not reachable (the one-line error every command gives)."""
    config = mlmd_store.connection_config(store_uri(cfg))
    if config.HasField("postgresql"):
        # It would fail part-way through the run, at the first property holding a backslash.
        raise configs.ConfigError(
            "metadata_uri: ml-metadata 1.16's PostgreSQL backend cannot store TFX runs (it mis-quotes "
            "strings containing a backslash); use a SQLite path or mysql://"
        )
    mlmd_store.check_reachable(store_uri(cfg), config)


def metadata_connection(cfg: configs.PipelineConfig):
    check_store(cfg)
    config = mlmd_store.connection_config(store_uri(cfg))
    if config.HasField("sqlite"):
        os.makedirs(os.path.dirname(os.path.abspath(config.sqlite.filename_uri)), exist_ok=True)
    return config


def run(cfg: configs.PipelineConfig, progress: float | None = None) -> dict[str, Any]:
    """Runs the pipeline to completion and returns `summarize()` of the run. With `progress`
    (the monotonic time the command started), prints a line per component as it starts and
    ends, and one at least every 10 s, to stderr.

    Raises:
      DataValidationError: the data gate found anomalies nobody accepted (nothing trained).
      RunFailed: a component failed.
      StoreBusy: another local run is using the same SQLite store.
    """
    connection = metadata_connection(cfg)
    reporter = Progress(store_uri(cfg), cfg.pipeline_name, since=progress) if progress is not None else contextlib.nullcontext()
    # A concurrent run is refused before anything loads.
    with exclusive_store(store_uri(cfg)), reporter:
        from tfx.orchestration.local.local_dag_runner import LocalDagRunner

        from pipeline import pipeline as P

        # TFX logs its deployment config, the store's connection (password included) in it.
        mlmd_store.redact_logs()
        pipeline = P.create_pipeline(cfg, connection)
        beam_speed.apply()  # every Beam component runs in this process (StatisticsGen's too)
        cancel_abandoned(cfg)
        try:
            LocalDagRunner().run(pipeline)
        except DataValidationError as e:
            _record_rejection(cfg, e)
            raise
        except Exception as e:  # noqa: BLE001 - any component failure, reported by name
            failed = _failed_component(cfg)
            cause = str(e).strip().splitlines()
            raise RunFailed(f"component {failed or '?'} failed: {type(e).__name__}: {cause[-1] if cause else ''}") from e
    return summarize(cfg)


def _record_rejection(cfg: configs.PipelineConfig, error: DataValidationError) -> None:
    """Marks the execution that refused the data (the gate, or ExampleGen's file check) as a
    rejection, so `runs` says "rejected" rather than "failed" (lineage.run_status)."""
    from pipeline.lineage import REJECTED

    db = mlmd_store.open_store(store_uri(cfg), read_only=False)
    latest = queries.open_metadata(store_uri(cfg), cfg.pipeline_name).latest_run()
    failed = [c.execution_id for c in latest.components.values() if c.state == "failed"]
    executions = db.get_executions_by_id([int(i) for i in failed])
    for execution in executions:
        execution.custom_properties[REJECTED].string_value = f"{len(error.rows)} anomalies nobody accepted"
    if executions:
        db.put_executions(executions)


def _failed_component(cfg: configs.PipelineConfig) -> str | None:
    try:
        latest = queries.open_metadata(store_uri(cfg), cfg.pipeline_name).latest_run()
    except mlmd_store.MetadataError:
        return None
    return next((name for name, c in latest.components.items() if c.state == "failed"), None)


def summarize(cfg: configs.PipelineConfig) -> dict[str, Any]:
    """What the latest run did: component states, blessing, metrics, the pushed model."""
    from pipeline import pipeline as P

    latest = queries.open_metadata(store_uri(cfg), cfg.pipeline_name).latest_run()
    blessing = latest.output(P.EVALUATOR, "blessing")
    evaluation = latest.output(P.EVALUATOR, "evaluation")
    pushed = latest.output(P.PUSHER, "pushed_model")
    was_pushed = bool(pushed is not None and queries.prop(pushed, "pushed"))
    return {
        "run_id": latest.run_id,
        "status": latest.status,
        "components": {name: c.state for name, c in latest.components.items()},
        "blessed": bool(blessing is not None and queries.prop(blessing, "blessed")),
        "metrics": overall_metrics(evaluation.uri) if evaluation is not None else {},
        "pushed_model": queries.prop(pushed, "pushed_destination") if was_pushed else None,
        "serving_model_dir": cfg.serving_model_dir,
        "metadata": mlmd_store.redact(cfg.metadata_uri),
    }


def format_summary(summary: dict[str, Any]) -> str:
    metrics = summary["metrics"]
    shown = ("auc", "binary_accuracy", "precision", "recall", "example_count")
    lines = [
        f"run {summary['run_id']}: {summary['status']}",
        "components: " + ", ".join(f"{k}={v}" for k, v in summary["components"].items()),
        "eval metrics: "
        + ", ".join(f"{k}={metrics[k]:.4f}" if k != "example_count" else f"{k}={int(metrics[k])}" for k in shown if k in metrics),
        f"blessed: {'yes' if summary['blessed'] else 'no'}",
        f"pushed model: {summary['pushed_model'] or 'none (not blessed, nothing pushed)'}",
        f"metadata store: {summary['metadata']}",
    ]
    if "wall_seconds" in summary:
        lines.append(f"wall time: {summary['wall_seconds']} s")
    return "\n".join(lines)
