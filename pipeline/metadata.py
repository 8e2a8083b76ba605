"""Read-only queries over ML Metadata: runs, artifacts, lineage, model comparison.

Everything goes through the `ml_metadata` MetadataStore API, so every store TFX writes to
(SQLite locally, PostgreSQL or MySQL shared) answers the same questions. The queries return
plain data (dataclasses, dicts); `pipeline/metadata_report.py` renders them as tables, trees
or JSON.

Reading Vertex ML Metadata: Vertex runs record the same TFX types and events in a Vertex
ML Metadata store, which is reached through the aiplatform API (`aiplatform.Artifact`,
`aiplatform.Execution`, `MetadataStore` lineage subgraphs), not an ml_metadata connection.
The `Metadata` class needs five primitives from a store (contexts by type and name, children
of a context, executions of a context, events by execution/artifact, artifacts by id); a
Vertex reader would implement those over the aiplatform API and reuse everything else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import sys
import tempfile
import urllib.parse
from collections.abc import Iterable
from typing import Any

from ml_metadata import errors as mlmd_errors
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

Artifact = metadata_store_pb2.Artifact
Event = metadata_store_pb2.Event

_STATES = {
    metadata_store_pb2.Execution.NEW: "new",
    metadata_store_pb2.Execution.RUNNING: "running",
    metadata_store_pb2.Execution.COMPLETE: "ran",
    metadata_store_pb2.Execution.FAILED: "failed",
    metadata_store_pb2.Execution.CACHED: "cached",
    metadata_store_pb2.Execution.CANCELED: "canceled",
}
_INPUTS = (Event.INPUT, Event.DECLARED_INPUT)
_OUTPUTS = (Event.OUTPUT, Event.DECLARED_OUTPUT)
# Artifact properties worth showing, in this order.
KEY_PROPERTIES = ("span", "version", "split_names", "blessed", "pushed", "pushed_version", "pushed_destination")


class MetadataError(Exception):
    """The store cannot be reached or does not hold what was asked for. One line."""


# --- Connections ------------------------------------------------------------------------------

def connection_config(uri: str, read_only: bool = False) -> metadata_store_pb2.ConnectionConfig:
    """A ConnectionConfig from a store URI.

    Accepted: a SQLite file path (or sqlite:///path), mysql://user[:pw]@host[:port]/db, and
    postgresql://user[:pw]@host[:port]/db (readable, but ml-metadata 1.16 cannot store TFX
    runs there: its PostgreSQL backend mis-quotes strings containing a backslash).
    """
    if not uri:
        raise MetadataError("no metadata store given")
    config = metadata_store_pb2.ConnectionConfig()
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("postgresql", "postgres", "mysql"):
        if not parsed.hostname or not parsed.path.strip("/"):
            raise MetadataError(f"metadata URI needs a host and a database: {redact(uri)}")
        if parsed.scheme == "mysql":
            db = config.mysql
            db.host, db.database = parsed.hostname, parsed.path.strip("/")
            db.port = parsed.port or 3306
        else:
            db = config.postgresql
            db.host, db.dbname = parsed.hostname, parsed.path.strip("/")
            db.port = str(parsed.port or 5432)
        db.user = urllib.parse.unquote(parsed.username or "")
        if parsed.password:
            db.password = urllib.parse.unquote(parsed.password)
        return config
    if parsed.scheme not in ("", "sqlite"):
        raise MetadataError(f"unsupported metadata store {parsed.scheme!r}: use a SQLite path or mysql://")
    path = parsed.path if parsed.scheme == "sqlite" else uri
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
        if read_only
        else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    return config


def redact(uri: str | None) -> str | None:
    """The URI without its password, for messages and summaries."""
    if not uri:
        return uri
    parsed = urllib.parse.urlparse(uri)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return parsed._replace(netloc=netloc).geturl()
    return uri


def open_store(uri: str, read_only: bool = True) -> metadata_store.MetadataStore:
    """Opens an existing store (for reading, by default). A missing SQLite file is an error,
    not a new store."""
    config = connection_config(uri, read_only=read_only)
    if config.HasField("sqlite") and not os.path.isfile(config.sqlite.filename_uri):
        raise MetadataError(f"no metadata store at {config.sqlite.filename_uri} (run the pipeline first)")
    if config.HasField("postgresql") or config.HasField("mysql"):
        # A server that is not there is the common mistake, and MLMD's own error for it is
        # empty for MySQL ("errno: , error:"): check the port first, and do not retry.
        db = config.mysql if config.HasField("mysql") else config.postgresql
        try:
            socket.create_connection((db.host, int(db.port)), timeout=5).close()
        except OSError as e:
            raise MetadataError(f"cannot open the metadata store {redact(uri)}: cannot reach {db.host}:{db.port} ({e.strerror or e})") from e
        config.retry_options.max_num_retries = 1
    with _captured_fd2() as native_log:
        try:
            return metadata_store.MetadataStore(config)
        except (mlmd_errors.StatusError, RuntimeError) as e:
            error = e
    # The database client library explains a failed connection on fd 2 ("Connection
    # refused", "password authentication failed"); that is the useful part.
    reasons = [line.split("] ", 1)[-1].strip() for line in native_log if "could not connect" in line or "FATAL" in line or "refused" in line]
    reason = reasons[0] if reasons else (str(error).strip().splitlines() or [type(error).__name__])[0]
    raise MetadataError(f"cannot open the metadata store {redact(uri)}: {reason}") from error


@contextlib.contextmanager
def _captured_fd2():
    """Redirects file descriptor 2 (where MLMD's C++ code and libpq log) to a temporary file;
    yields a list that holds the captured lines once the block has exited."""
    sys.stderr.flush()
    saved = os.dup(2)
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().splitlines())


def prop(message, name: str) -> Any:
    """A property or custom property's value (JSON-decoded where TFX stores JSON), or None."""
    for props in (message.properties, message.custom_properties):
        if name in props:
            value = props[name]
            kind = value.WhichOneof("value")
            if kind is None:
                return None
            result = getattr(value, kind)
            if kind == "proto_value" or kind == "struct_value":
                return str(result)
            return result
    return None


def artifact_dict(artifact: Artifact) -> dict[str, Any]:
    """The user-facing view of an artifact: id, type, uri and key properties."""
    props = {}
    for name in KEY_PROPERTIES:
        value = prop(artifact, name)
        if value is not None:
            if name == "split_names" and isinstance(value, str):
                value = json.loads(value)
            props[name] = value
    return {"id": artifact.id, "type": artifact.type, "uri": artifact.uri, "properties": props,
            "created_ms": artifact.create_time_since_epoch}


# --- Runs ------------------------------------------------------------------------------------

@dataclasses.dataclass
class ComponentRun:
    component: str
    state: str
    execution_id: int
    outputs: dict[str, list[Artifact]]


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
        if "canceled" in states:
            return "interrupted"
        if states & {"new", "running"}:
            return "running"
        return "complete"

    def output(self, component: str, key: str) -> Artifact | None:
        run = self.components.get(component)
        artifacts = run.outputs.get(key, []) if run else []
        return artifacts[0] if artifacts else None

    @property
    def pushed_version(self) -> str | None:
        for c in self.components.values():
            for artifacts in c.outputs.values():
                for a in artifacts:
                    if a.type == "PushedModel" and prop(a, "pushed"):
                        return prop(a, "pushed_version")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "status": self.status,
            "components": {name: c.state for name, c in self.components.items()},
            "pushed_version": self.pushed_version,
        }


class Metadata:
    """Queries over one pipeline's records in an ML Metadata store."""

    def __init__(self, store: metadata_store.MetadataStore, pipeline_name: str):
        self.store = store
        self.pipeline_name = pipeline_name
        self._component_cache: dict[int, str] = {}

    # ----- primitives
    def _pipeline_context(self) -> metadata_store_pb2.Context:
        ctx = self.store.get_context_by_type_and_name("pipeline", self.pipeline_name)
        if ctx is None:
            raise MetadataError(f"no runs of pipeline {self.pipeline_name!r} in this metadata store")
        return ctx

    def component_of(self, execution_id: int) -> str:
        if execution_id not in self._component_cache:
            prefix = self.pipeline_name + "."
            name = "?"
            for ctx in self.store.get_contexts_by_execution(execution_id):
                if ctx.type == "node" and ctx.name.startswith(prefix):
                    name = ctx.name[len(prefix):]
            self._component_cache[execution_id] = name
        return self._component_cache[execution_id]

    def _events_by_execution(self, execution_ids: Iterable[int], types) -> dict[int, dict[str, list[Artifact]]]:
        events = [e for e in self.store.get_events_by_execution_ids(list(execution_ids)) if e.type in types]
        artifacts = {a.id: a for a in self.store.get_artifacts_by_id(list({e.artifact_id for e in events}))}
        result: dict[int, dict[str, list[Artifact]]] = {}
        for e in events:
            key = e.path.steps[0].key if e.path.steps else "artifact"
            result.setdefault(e.execution_id, {}).setdefault(key, []).append(artifacts[e.artifact_id])
        return result

    def execution(self, execution_id: int) -> metadata_store_pb2.Execution:
        return self.store.get_executions_by_id([execution_id])[0]

    # ----- runs
    def runs(self) -> list[RunInfo]:
        """All runs of the pipeline, newest first."""
        pipeline_ctx = self._pipeline_context()
        run_contexts = [c for c in self.store.get_children_contexts_by_context(pipeline_ctx.id) if c.type == "pipeline_run"]
        runs = []
        for ctx in run_contexts:
            executions = sorted(self.store.get_executions_by_context(ctx.id), key=lambda e: e.id)
            outputs = self._events_by_execution((e.id for e in executions), _OUTPUTS)
            components = {}
            for e in executions:
                name = self.component_of(e.id)
                components[name] = ComponentRun(name, _STATES.get(e.last_known_state, "unknown"), e.id, outputs.get(e.id, {}))
            end = max((e.last_update_time_since_epoch for e in executions), default=ctx.create_time_since_epoch)
            runs.append(RunInfo(ctx.name, ctx.id, ctx.create_time_since_epoch, end, components))
        return sorted(runs, key=lambda r: (r.start_ms, r.context_id), reverse=True)

    def latest_run(self) -> RunInfo:
        runs = self.runs()
        if not runs:
            raise MetadataError(f"pipeline {self.pipeline_name!r} has no runs")
        return runs[0]

    def run(self, run_id: str) -> RunInfo:
        for r in self.runs():
            if r.run_id == run_id:
                return r
        raise MetadataError(f"no run {run_id!r} of pipeline {self.pipeline_name!r}")

    # ----- artifacts
    def artifacts(self, run_id: str | None = None, component: str | None = None, type_name: str | None = None) -> list[dict]:
        """Artifacts the pipeline produced, newest first, filtered by run, component or type."""
        runs = [self.run(run_id)] if run_id else self.runs()
        seen: dict[int, dict] = {}
        for r in runs:
            for c in r.components.values():
                if component and c.component != component:
                    continue
                for key, artifacts in c.outputs.items():
                    for a in artifacts:
                        if type_name and a.type != type_name:
                            continue
                        if a.id not in seen:
                            seen[a.id] = {**artifact_dict(a), "component": c.component, "output_key": key, "run_id": r.run_id}
        if component and not any(component in r.components for r in runs):
            raise MetadataError(f"no component {component!r} in the selected runs")
        return sorted(seen.values(), key=lambda a: a["id"], reverse=True)

    def pushed_models(self) -> list[Artifact]:
        """Pushed models (pushed=1), newest first."""
        self._pipeline_context()
        pushed = [a for a in self.store.get_artifacts_by_type("PushedModel") if prop(a, "pushed")]
        return sorted(pushed, key=lambda a: (a.create_time_since_epoch, a.id), reverse=True)

    def resolve(self, ref: str) -> Artifact:
        """An artifact by pushed model version, or by artifact id."""
        ref = str(ref).strip()
        for a in self.store.get_artifacts_by_type("PushedModel"):
            if prop(a, "pushed_version") == ref or os.path.basename(str(prop(a, "pushed_destination") or "")) == ref:
                return a
        if ref.isdigit():
            found = self.store.get_artifacts_by_id([int(ref)])
            if found:
                return found[0]
        raise MetadataError(f"no artifact or pushed model version {ref!r} in this metadata store")

    # ----- lineage
    def producer(self, artifact: Artifact) -> tuple[metadata_store_pb2.Execution, dict[str, list[Artifact]]] | None:
        """The execution that output `artifact` (the first, not a cached re-use) and its inputs."""
        events = [e for e in self.store.get_events_by_artifact_ids([artifact.id]) if e.type in _OUTPUTS]
        if not events:
            return None
        execution = self.execution(min(e.execution_id for e in events))
        return execution, self._events_by_execution([execution.id], _INPUTS).get(execution.id, {})

    def consumers(self, artifact: Artifact) -> list[tuple[metadata_store_pb2.Execution, dict[str, list[Artifact]]]]:
        events = [e for e in self.store.get_events_by_artifact_ids([artifact.id]) if e.type in _INPUTS]
        ids = sorted({e.execution_id for e in events})
        outputs = self._events_by_execution(ids, _OUTPUTS)
        return [(self.execution(i), outputs.get(i, {})) for i in ids]

    def _execution_dict(self, execution: metadata_store_pb2.Execution) -> dict[str, Any]:
        d = {"id": execution.id, "component": self.component_of(execution.id),
             "state": _STATES.get(execution.last_known_state, "unknown")}
        custom = prop(execution, "custom_config")
        if custom and custom != "null":
            config = json.loads(custom)
            if "hparams" in config:
                d["hparams"] = config["hparams"]
            if "module_fingerprint" in config:
                d["module_fingerprint"] = config["module_fingerprint"]
        for name in ("input_base", "train_args"):
            value = prop(execution, name)
            if value:
                d[name] = json.loads(value) if name == "train_args" else value
        return d

    def lineage(self, artifact: Artifact, downstream: bool = False, _seen: set[int] | None = None) -> dict[str, Any]:
        """The graph upstream of `artifact` (or downstream) as a nested dict.

        Upstream: artifact -> produced_by {execution, inputs: {key: [artifact nodes]},
        also_produced: [sibling outputs]}. An artifact met twice is expanded once; later
        occurrences say "seen": true.
        """
        seen = _seen if _seen is not None else set()
        node = artifact_dict(artifact)
        if artifact.id in seen:
            return {**node, "seen": True}
        seen.add(artifact.id)
        if downstream:
            node["consumed_by"] = []
            for execution, outputs in self.consumers(artifact):
                node["consumed_by"].append({
                    "execution": self._execution_dict(execution),
                    "outputs": {k: [self.lineage(a, True, seen) for a in v] for k, v in sorted(outputs.items())},
                })
            return node
        produced = self.producer(artifact)
        if produced is None:
            return node
        execution, inputs = produced
        siblings = self._events_by_execution([execution.id], _OUTPUTS).get(execution.id, {})
        node["produced_by"] = {
            "execution": self._execution_dict(execution),
            "inputs": {k: [self.lineage(a, False, seen) for a in v] for k, v in sorted(inputs.items())},
            "also_produced": [artifact_dict(a) for v in siblings.values() for a in v if a.id != artifact.id],
        }
        if artifact.type == "Examples":
            # What describes these examples: statistics and anomalies computed from them.
            node["described_by"] = [
                artifact_dict(a)
                for _, outs in self.consumers(artifact)
                for v in outs.values()
                for a in v
                if a.type in ("ExampleStatistics", "ExampleAnomalies")
            ]
        return node

    # ----- models
    def model_of(self, artifact: Artifact) -> Artifact:
        """The trained Model behind a PushedModel (or the Model itself)."""
        if artifact.type == "Model":
            return artifact
        if artifact.type == "PushedModel":
            produced = self.producer(artifact)
            if produced and produced[1].get("model"):
                return produced[1]["model"][0]
        raise MetadataError(f"artifact {artifact.id} is a {artifact.type}, not a model or pushed model")

    def evaluation_of(self, model: Artifact) -> Artifact | None:
        """The ModelEvaluation of the Evaluator run that took `model` as its candidate."""
        for execution, outputs in self.consumers(model):
            inputs = self._events_by_execution([execution.id], _INPUTS).get(execution.id, {})
            if any(a.id == model.id for a in inputs.get("model", [])):
                if outputs.get("evaluation"):
                    return outputs["evaluation"][0]
        return None

    def training_inputs(self, model: Artifact) -> dict[str, Any]:
        """What a model was made from: upstream artifacts by type, hyperparameters, code."""
        tree = self.lineage(model)
        result: dict[str, Any] = {"artifacts": {}}

        def walk(node):
            produced = node.get("produced_by")
            if not produced:
                return
            execution = produced["execution"]
            if execution["component"] == "trainer":
                result["hparams"] = execution.get("hparams")
                result["module_fingerprint"] = execution.get("module_fingerprint")
                result["train_args"] = execution.get("train_args")
            if execution.get("input_base"):
                result["input_base"] = execution["input_base"]
            for key, nodes in produced["inputs"].items():
                for n in nodes:
                    result["artifacts"].setdefault(f"{execution['component']}.{key}", n["id"])
                    walk(n)

        walk(tree)
        return result

    def compare(self, ref_a: str | None = None, ref_b: str | None = None) -> dict[str, Any]:
        """Evaluation metrics of two models side by side, and what differed in their inputs.

        Default: the serving model (the newest pushed) and the one pushed before it.
        """
        if ref_a is None or ref_b is None:
            pushed = self.pushed_models()
            if len(pushed) < 2 and (ref_a is None and ref_b is None):
                raise MetadataError(f"need two pushed models to compare, this store has {len(pushed)}")
            a = self.resolve(ref_a) if ref_a else pushed[0]
            b = self.resolve(ref_b) if ref_b else next((p for p in pushed if p.id != a.id), None)
            if b is None:
                raise MetadataError("no other pushed model to compare with")
        else:
            a, b = self.resolve(ref_a), self.resolve(ref_b)
        sides = {}
        for label, artifact in (("a", a), ("b", b)):
            model = self.model_of(artifact)
            evaluation = self.evaluation_of(model)
            sides[label] = {
                "artifact": artifact_dict(artifact),
                "model_id": model.id,
                "metrics": sliced_metrics(evaluation.uri) if evaluation else {},
                "inputs": self.training_inputs(model),
            }
        ia, ib = sides["a"]["inputs"], sides["b"]["inputs"]
        differences = {}
        for key in sorted(set(ia["artifacts"]) | set(ib["artifacts"])):
            if ia["artifacts"].get(key) != ib["artifacts"].get(key):
                differences[key] = [ia["artifacts"].get(key), ib["artifacts"].get(key)]
        for key in ("module_fingerprint", "train_args", "input_base"):
            if ia.get(key) != ib.get(key):
                differences[key] = [ia.get(key), ib.get(key)]
        ha, hb = ia.get("hparams") or {}, ib.get("hparams") or {}
        for key in sorted(set(ha) | set(hb)):
            if ha.get(key) != hb.get(key):
                differences[f"hparams.{key}"] = [ha.get(key), hb.get(key)]
        return {"a": sides["a"], "b": sides["b"], "differences": differences}


# --- Evaluations ------------------------------------------------------------------------------

def overall_metrics(evaluation_uri: str) -> dict[str, float]:
    """The overall slice's metrics from a TFMA evaluation artifact."""
    return sliced_metrics(evaluation_uri).get("overall", {})


def sliced_metrics(evaluation_uri: str) -> dict[str, dict[str, float]]:
    """Slice name ("overall", "payment_type=Cash", ...) -> metric name -> value.

    A model evaluated against a baseline also has the baseline's metrics in the artifact; only
    the candidate's are returned.
    """
    import tensorflow_model_analysis as tfma

    result = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        key = tfma.slicer.deserialize_slice_key(metrics.slice_key)
        name = ", ".join(f"{k}={v.decode() if isinstance(v, bytes) else v}" for k, v in key) or "overall"
        values = {}
        for kv in metrics.metric_keys_and_values:
            if kv.key.model_name and kv.key.model_name != "candidate":
                continue  # the baseline's copy
            if kv.key.is_diff:
                continue
            if kv.value.HasField("double_value"):
                values[kv.key.name] = kv.value.double_value.value
        result[name] = values
    return result
