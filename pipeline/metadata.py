"""Read-only queries over ML Metadata: runs, artifacts, lineage, evaluations.

Everything goes through the `ml_metadata` MetadataStore API, so any store TFX writes to
(SQLite locally, MySQL/PostgreSQL for a shared store) answers the same questions.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterable

from ml_metadata import errors as mlmd_errors
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

_STATES = {
    metadata_store_pb2.Execution.NEW: "new",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.COMPLETE: "ran",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}


class MetadataError(Exception):
    """The store cannot be opened or does not hold what was asked for."""


def sqlite_connection(path: str) -> metadata_store_pb2.ConnectionConfig:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return config


def open_store(config: metadata_store_pb2.ConnectionConfig) -> metadata_store.MetadataStore:
    """Opens an existing store read-only. A missing SQLite file is an error, not a new store."""
    if config.HasField("sqlite") and not os.path.isfile(config.sqlite.filename_uri):
        raise MetadataError(f"no metadata store at {config.sqlite.filename_uri} (run the pipeline first)")
    try:
        return metadata_store.MetadataStore(config)
    except mlmd_errors.StatusError as e:
        raise MetadataError(f"cannot open the metadata store: {e}") from e


def _prop(message, name: str) -> Any:
    """A property or custom property's value, or None."""
    for props in (message.properties, message.custom_properties):
        if name in props:
            value = props[name]
            return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return None


@dataclasses.dataclass
class ComponentRun:
    component: str
    state: str
    execution_id: int
    outputs: dict[str, list[metadata_store_pb2.Artifact]]


@dataclasses.dataclass
class RunInfo:
    run_id: str
    context_id: int
    start_ms: int
    end_ms: int
    components: dict[str, ComponentRun]

    @property
    def status(self) -> str:
        states = {c.state for c in self.components.values()}
        if "failed" in states:
            return "failed"
        if states & {"new", "running"}:
            return "running"
        return "complete"

    def output(self, component: str, key: str) -> metadata_store_pb2.Artifact | None:
        run = self.components.get(component)
        artifacts = run.outputs.get(key, []) if run else []
        return artifacts[0] if artifacts else None


class Metadata:
    """Queries over one pipeline's records in an ML Metadata store."""

    def __init__(self, store: metadata_store.MetadataStore, pipeline_name: str):
        self.store = store
        self.pipeline_name = pipeline_name

    def _pipeline_context(self) -> metadata_store_pb2.Context:
        ctx = self.store.get_context_by_type_and_name("pipeline", self.pipeline_name)
        if ctx is None:
            raise MetadataError(f"no runs of pipeline {self.pipeline_name!r} in this metadata store")
        return ctx

    def _component_of(self, execution_id: int) -> str:
        prefix = self.pipeline_name + "."
        for ctx in self.store.get_contexts_by_execution(execution_id):
            if ctx.type == "node" and ctx.name.startswith(prefix):
                return ctx.name[len(prefix):]
        return "?"

    def _outputs(self, execution_ids: Iterable[int]) -> dict[int, dict[str, list]]:
        events = self.store.get_events_by_execution_ids(list(execution_ids))
        outputs = [e for e in events if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
        artifacts = {a.id: a for a in self.store.get_artifacts_by_id({e.artifact_id for e in outputs})}
        result: dict[int, dict[str, list]] = {}
        for e in outputs:
            key = e.path.steps[0].key if e.path.steps else "output"
            result.setdefault(e.execution_id, {}).setdefault(key, []).append(artifacts[e.artifact_id])
        return result

    def runs(self) -> list[RunInfo]:
        """All runs of the pipeline, newest first."""
        pipeline_ctx = self._pipeline_context()
        run_contexts = self.store.get_children_contexts_by_context(pipeline_ctx.id)
        run_contexts = [c for c in run_contexts if c.type == "pipeline_run"]
        runs = []
        for ctx in run_contexts:
            executions = self.store.get_executions_by_context(ctx.id)
            outputs = self._outputs(e.id for e in executions)
            components = {}
            for e in sorted(executions, key=lambda e: e.id):
                name = self._component_of(e.id)
                components[name] = ComponentRun(name, _STATES.get(e.last_known_state, "unknown"), e.id, outputs.get(e.id, {}))
            end = max((e.last_update_time_since_epoch for e in executions), default=ctx.create_time_since_epoch)
            runs.append(RunInfo(ctx.name, ctx.id, ctx.create_time_since_epoch, end, components))
        return sorted(runs, key=lambda r: (r.start_ms, r.context_id), reverse=True)

    def latest_run(self) -> RunInfo:
        runs = self.runs()
        if not runs:
            raise MetadataError(f"pipeline {self.pipeline_name!r} has no runs")
        return runs[0]


def overall_metrics(evaluation_uri: str) -> dict[str, float]:
    """The overall slice's metrics from a TFMA evaluation artifact."""
    return sliced_metrics(evaluation_uri).get("overall", {})


def sliced_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """Slice name ("overall", "payment_type=Cash", ...) -> metric name -> value."""
    import tensorflow_model_analysis as tfma

    result = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        key = tfma.slicer.deserialize_slice_key(metrics.slice_key)
        name = ", ".join(f"{k}={v}" for k, v in key) or "overall"
        values = {}
        for kv in metrics.metric_keys_and_values:
            value = kv.value
            if value.HasField("double_value"):
                values[kv.key.name] = value.double_value.value
        result[name] = values
    return result
