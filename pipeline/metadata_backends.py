"""The one lineage interface, a backend per store: ML Metadata (SQLite, MySQL/MariaDB) and
Vertex ML Metadata.

A backend loads one pipeline's records as a `lineage.Graph` and records what the operations
tools add (a rollback). The facts (`pipeline/lineage.py`), the components that resolve their
inputs, and the commands (`ops/`) never know which store they read.

How each store records a pipeline:

  ML Metadata (TFX's LocalDagRunner)    Vertex ML Metadata (Vertex AI Pipelines)
  context "pipeline" <name>             context <store>/contexts/<name>, schema system.Pipeline
  context "pipeline_run", its child     context schema system.PipelineRun, child of the above
  context "node" <name>.<component>     the execution's display_name: the task (component) id
  event path key: the input/output key  output: the artifact's display_name (its output key);
                                        input: the event's label "key" where the service has
                                        one, else the producer's output key
  artifact type name (Examples)         schema_title (tfx.Examples)
  properties and custom properties      metadata (a Struct; "custom:" before a custom
                                        property that shares a declared property's name)

Open one with `open_backend(uri, pipeline_name)`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any, Protocol

from pipeline import stores
from pipeline.lineage import CACHED, CANCELED, FAILED, NEW, RAN, RUNNING, Artifact, Event, Execution, Graph, Run


class NewArtifact:
    """An artifact a command records (a rollback's outputs)."""

    def __init__(self, type_name: str, uri: str, **props: Any):
        self.type, self.uri, self.props = type_name, uri, props


class Backend(Protocol):
    pipeline_name: str
    location: str  # the store, for messages (no secret)

    def load(self) -> Graph: ...

    def record(
        self,
        component: str,
        inputs: Mapping[str, list[Artifact]],
        outputs: Mapping[str, list[NewArtifact]],
        properties: Mapping[str, Any],
    ) -> tuple[str, dict[str, list[Artifact]]]:
        """Records a completed execution of `component` in a new run of the pipeline; returns
        the run's name and the recorded outputs."""
        ...


def open_backend(uri: str, pipeline_name: str, read_only: bool = True) -> Backend:
    """The backend for a store URI (see pipeline/stores.py)."""
    if stores.is_vertex(uri):
        project, region = stores.vertex_location(uri)
        return VertexBackend(project, region, pipeline_name)
    return MlmdBackend(stores.open_store(uri, read_only=read_only), pipeline_name, stores.redact(uri) or "")


def _plain(value: Any) -> Any:
    """Struct numbers are doubles: an integral one is an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _ordered(items: list, key) -> list:
    return [item for _, item in sorted(((key(i), i) for i in items), key=lambda p: p[0])]


# --- ML Metadata ----------------------------------------------------------------------------------

_MLMD_OUTPUTS = (1, 4)  # Event.DECLARED_OUTPUT, OUTPUT
_MLMD_INPUTS = (2, 3)  # Event.DECLARED_INPUT, INPUT
_MLMD_STATES = {0: NEW, 1: NEW, 2: RUNNING, 3: RAN, 4: FAILED, 5: CACHED, 6: CANCELED}  # Execution.State


def _mlmd_props(message: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    props: dict[str, Any] = {}
    for mapping in (message.properties, message.custom_properties):  # custom wins (ExampleGen's span)
        for name, value in mapping.items():
            kind = value.WhichOneof("value")
            if kind is None:
                continue
            if kind == "struct_value":
                decoded = json_format.MessageToDict(value.struct_value)
                props[name] = decoded.get("__value__", decoded)
            elif kind == "proto_value":
                props[name] = str(value.proto_value)
            else:
                props[name] = getattr(value, kind)
    return props


class MlmdBackend:
    """One pipeline in an ML Metadata store, as TFX's LocalDagRunner records it."""

    def __init__(self, store: Any, pipeline_name: str, location: str = ""):
        self.store, self.pipeline_name, self.location = store, pipeline_name, location

    def _pipeline_context(self):
        return self.store.get_context_by_type_and_name("pipeline", self.pipeline_name)

    def load(self) -> Graph:
        ctx = self._pipeline_context()
        if ctx is None:
            return Graph(self.pipeline_name, [], [], [], [])
        runs, executions = [], {}
        for run_ctx in self.store.get_children_contexts_by_context(ctx.id):
            if run_ctx.type != "pipeline_run":
                continue
            found = self.store.get_executions_by_context(run_ctx.id)
            executions.update({e.id: e for e in found})
            runs.append(Run(run_ctx.name, run_ctx.create_time_since_epoch, tuple(str(e.id) for e in found), run_ctx.id))
        components: dict[int, str] = {}
        prefix = self.pipeline_name + "."
        for node in self.store.get_contexts_by_type("node"):
            if node.name.startswith(prefix):
                for e in self.store.get_executions_by_context(node.id):
                    components[e.id] = node.name[len(prefix) :]
        events = self.store.get_events_by_execution_ids(list(executions)) if executions else []
        artifact_ids = sorted({e.artifact_id for e in events})
        artifacts = self.store.get_artifacts_by_id(artifact_ids) if artifact_ids else []
        return Graph(
            self.pipeline_name,
            runs,
            [
                Execution(
                    str(e.id),
                    components.get(e.id, "?"),
                    _MLMD_STATES.get(e.last_known_state, "unknown"),
                    _mlmd_props(e),
                    e.create_time_since_epoch,
                    e.last_update_time_since_epoch,
                    e.id,
                )
                for e in executions.values()
            ],
            [Artifact(str(a.id), a.type, a.uri, _mlmd_props(a), a.create_time_since_epoch, a.id) for a in artifacts],
            [
                Event(
                    str(e.execution_id), str(e.artifact_id), e.type in _MLMD_OUTPUTS, e.path.steps[0].key if e.path.steps else ""
                )
                for e in events
                if e.type in _MLMD_OUTPUTS or e.type in _MLMD_INPUTS
            ],
        )

    def record(self, component, inputs, outputs, properties):
        import datetime

        from ml_metadata.proto import metadata_store_pb2 as pb

        ctx = self._pipeline_context()
        if ctx is None:
            raise stores.MetadataError(f"no runs of pipeline {self.pipeline_name!r} in {self.location}")
        execution_type = pb.ExecutionType(name=component.capitalize())
        type_id = self.store.put_execution_type(execution_type)
        execution = pb.Execution(type_id=type_id, last_known_state=pb.Execution.COMPLETE)
        for key, value in properties.items():
            _set_custom(execution.custom_properties[key], value)
        pairs = []
        for key, artifacts in inputs.items():
            for a in artifacts:
                [stored] = self.store.get_artifacts_by_id([int(a.ref)])
                pairs.append((stored, _event(pb.Event.INPUT, key)))
        written: dict[str, list[pb.Artifact]] = {}
        for key, news in outputs.items():
            for new in news:
                artifact = pb.Artifact(type_id=self.store.get_artifact_type(new.type).id, uri=new.uri, state=pb.Artifact.LIVE)
                for name, value in new.props.items():
                    _set_custom(artifact.custom_properties[name], value)
                # Stored first, so a later output can name it (a blessing names its model).
                [artifact.id] = self.store.put_artifacts([artifact])
                written.setdefault(key, []).append(artifact)
                pairs.append((artifact, _event(pb.Event.OUTPUT, key)))
        run_name = f"{component}-{datetime.datetime.now().isoformat()}"
        run_ctx = pb.Context(type_id=self.store.get_context_type("pipeline_run").id, name=run_name)
        node_name = f"{self.pipeline_name}.{component}"
        node_ctx = self.store.get_context_by_type_and_name("node", node_name) or pb.Context(
            type_id=self.store.get_context_type("node").id, name=node_name
        )
        _, _, context_ids = self.store.put_execution(
            execution, pairs, [ctx, run_ctx, node_ctx], reuse_context_if_already_exist=True
        )
        self.store.put_parent_contexts([pb.ParentContext(child_id=context_ids[1], parent_id=ctx.id)])
        g = self.load()
        return run_name, {key: [g.artifacts[str(a.id)] for a in arts] for key, arts in written.items()}


def _set_custom(value: Any, python: Any) -> None:
    if isinstance(python, bool):
        value.int_value = int(python)
    elif isinstance(python, int):
        value.int_value = python
    elif isinstance(python, float):
        value.double_value = python
    else:
        value.string_value = str(python)


def _event(kind: int, key: str):
    from ml_metadata.proto import metadata_store_pb2 as pb

    event = pb.Event(type=kind)
    event.path.steps.add().key = key
    event.path.steps.add().index = 0
    return event


# --- Vertex ML Metadata ---------------------------------------------------------------------------

PIPELINE_SCHEMA = "system.Pipeline"
RUN_SCHEMA = "system.PipelineRun"
EXECUTION_SCHEMA = "system.ContainerExecution"
TFX_TYPE_PREFIX = "tfx."
CUSTOM_PREFIX = "custom:"
# An event's label that names the input or output key (see the module docstring).
KEY_LABEL = "key"

_VERTEX_STATES = {
    "NEW": NEW,
    "RUNNING": RUNNING,
    "COMPLETE": RAN,
    "FAILED": FAILED,
    "CACHED": CACHED,
    "CANCELLED": CANCELED,
}


def vertex_type(schema_title: str) -> str:
    """Our type name of a Vertex schema title (tfx.Examples -> Examples)."""
    return schema_title[len(TFX_TYPE_PREFIX) :] if schema_title.startswith(TFX_TYPE_PREFIX) else schema_title


def schema_title(type_name: str) -> str:
    return type_name if "." in type_name else TFX_TYPE_PREFIX + type_name


def _vertex_props(metadata: Mapping[str, Any]) -> dict[str, Any]:
    props = {k: _plain(v) for k, v in metadata.items() if not k.startswith(CUSTOM_PREFIX)}
    props.update({k[len(CUSTOM_PREFIX) :]: _plain(v) for k, v in metadata.items() if k.startswith(CUSTOM_PREFIX)})
    return props


# Vertex AI Pipelines records a task's input parameters in its execution's metadata as
# "input:<name>" (and output parameters as "output:<name>").
INPUT_PREFIX = "input:"


def _execution_props(metadata: Mapping[str, Any]) -> dict[str, Any]:
    props = {k: _plain(v) for k, v in metadata.items() if ":" not in k}
    props.update({k[len(INPUT_PREFIX) :]: _plain(v) for k, v in metadata.items() if k.startswith(INPUT_PREFIX)})
    return props


def _metadata(resource: Any) -> dict[str, Any]:
    from google.protobuf import json_format

    return json_format.MessageToDict(type(resource).pb(resource).metadata)


def _ms(timestamp: Any) -> int:
    return int(timestamp.timestamp() * 1000) if timestamp else 0


def _number(name: str) -> int:
    tail = name.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class VertexBackend:
    """One pipeline in a region's Vertex ML Metadata store (the default store), read and
    written through the aiplatform client's MetadataService."""

    def __init__(self, project: str, region: str, pipeline_name: str, client: Any = None):
        self.project, self.region, self.pipeline_name = project, region, pipeline_name
        self.location = f"vertex://{project}/{region}"
        self.store_name = f"projects/{project}/locations/{region}/metadataStores/default"
        self._client = client

    @property
    def client(self):
        if self._client is None:
            from google.cloud import aiplatform_v1

            self._client = aiplatform_v1.MetadataServiceClient(
                client_options={"api_endpoint": f"{self.region}-aiplatform.googleapis.com"}
            )
        return self._client

    def context_name(self, context_id: str) -> str:
        return f"{self.store_name}/contexts/{context_id}"

    def _call(self, what: str, fn, *args, **kwargs):
        """A service call; what the service refuses (or cannot be reached) is one line."""
        from google.api_core import exceptions
        from google.auth import exceptions as auth_exceptions

        try:
            return fn(*args, **kwargs)
        except auth_exceptions.DefaultCredentialsError as e:
            raise stores.MetadataError(
                f"{self.location}: no Google Cloud credentials (run `gcloud auth application-default login`): "
                f"{str(e).splitlines()[0]}"
            ) from None
        except exceptions.GoogleAPICallError as e:
            raise stores.MetadataError(f"{self.location}: {what}: {e.message or type(e).__name__}") from None

    def _pipeline_context(self):
        from google.api_core import exceptions

        try:
            return self.client.get_context(name=self.context_name(self.pipeline_name))
        except exceptions.NotFound:
            return None
        except exceptions.GoogleAPICallError as e:
            raise stores.MetadataError(f"{self.location}: reading pipeline {self.pipeline_name!r}: {e.message}") from None

    def load(self) -> Graph:
        from google.cloud import aiplatform_v1 as v1

        ctx = self._call("credentials", lambda: self._pipeline_context())
        if ctx is None:
            return Graph(self.pipeline_name, [], [], [], [])
        run_filter = f'schema_title="{RUN_SCHEMA}" AND parent_contexts:"{ctx.name}"'
        run_contexts = list(
            self._call(
                "listing runs",
                self.client.list_contexts,
                request=v1.ListContextsRequest(parent=self.store_name, filter=run_filter),
            )
        )
        runs, executions, artifacts, events = [], {}, {}, []
        for run_ctx in run_contexts:
            graph = self._call(
                f"reading run {run_ctx.display_name}", self.client.query_context_lineage_subgraph, context=run_ctx.name
            )
            for e in graph.executions:
                executions[e.name] = e
            for a in graph.artifacts:
                artifacts[a.name] = a
            events.extend(graph.events)
            runs.append(
                Run(
                    run_ctx.display_name or run_ctx.name.rsplit("/", 1)[-1],
                    _ms(run_ctx.create_time),
                    tuple(e.name for e in graph.executions),
                    _number(run_ctx.name),
                )
            )
        # Output keys: the artifact's display name; input keys: the event's label, else that.
        keys = {}
        for e in events:
            label = dict(e.labels).get(KEY_LABEL)
            keys[(e.execution, e.artifact, e.type_)] = label or (
                artifacts[e.artifact].display_name if e.artifact in artifacts else ""
            )
        ordered_artifacts = _ordered(list(artifacts.values()), lambda a: (_ms(a.create_time), _number(a.name)))
        ordered_executions = _ordered(list(executions.values()), lambda e: (_ms(e.create_time), _number(e.name)))
        return Graph(
            self.pipeline_name,
            runs,
            [
                Execution(
                    e.name,
                    e.display_name,
                    _VERTEX_STATES.get(e.state.name, "unknown"),
                    _execution_props(_metadata(e)),
                    _ms(e.create_time),
                    _ms(e.update_time),
                    i,
                )
                for i, e in enumerate(ordered_executions)
            ],
            [
                Artifact(a.name, vertex_type(a.schema_title), a.uri, _vertex_props(_metadata(a)), _ms(a.create_time), i)
                for i, a in enumerate(ordered_artifacts)
            ],
            [
                Event(e.execution, e.artifact, e.type_ == v1.Event.Type.OUTPUT, keys[(e.execution, e.artifact, e.type_)])
                for e in events
            ],
        )

    def record(self, component, inputs, outputs, properties):
        from google.cloud import aiplatform_v1 as v1

        ctx = self._call("credentials", lambda: self._pipeline_context())
        if ctx is None:
            raise stores.MetadataError(f"no runs of pipeline {self.pipeline_name!r} in {self.location}")
        run_id = f"{self.pipeline_name}-{component}-{time.strftime('%Y%m%d%H%M%S')}"
        run_ctx = self._call(
            "creating the run",
            self.client.create_context,
            parent=self.store_name,
            context=v1.Context(display_name=run_id, schema_title=RUN_SCHEMA),
            context_id=run_id,
        )
        self._call("linking the run", self.client.add_context_children, context=ctx.name, child_contexts=[run_ctx.name])
        execution = self._call(
            "recording the execution",
            self.client.create_execution,
            parent=self.store_name,
            execution=v1.Execution(
                display_name=component,
                schema_title=EXECUTION_SCHEMA,
                state=v1.Execution.State.COMPLETE,
                metadata={k: v for k, v in properties.items()},
            ),
        )
        events = [
            v1.Event(artifact=a.ref, type_=v1.Event.Type.INPUT, labels={KEY_LABEL: key})
            for key, arts in inputs.items()
            for a in arts
        ]
        written: dict[str, list[str]] = {}
        for key, news in outputs.items():
            for new in news:
                created = self._call(
                    f"recording {key}",
                    self.client.create_artifact,
                    parent=self.store_name,
                    artifact=v1.Artifact(
                        display_name=key,
                        uri=new.uri,
                        schema_title=schema_title(new.type),
                        state=v1.Artifact.State.LIVE,
                        metadata=dict(new.props),
                    ),
                )
                written.setdefault(key, []).append(created.name)
                events.append(v1.Event(artifact=created.name, type_=v1.Event.Type.OUTPUT, labels={KEY_LABEL: key}))
        self._call("recording events", self.client.add_execution_events, execution=execution.name, events=events)
        self._call(
            "attributing to the run",
            self.client.add_context_artifacts_and_executions,
            context=run_ctx.name,
            artifacts=[name for names in written.values() for name in names],
            executions=[execution.name],
        )
        g = self.load()
        return run_id, {key: [g.artifacts[name] for name in names] for key, names in written.items()}


def location_uri(uri: str) -> str:
    """The store URI to hand to a component: the password removed (stores.redact)."""
    return stores.redact(uri) or ""


def parse_scope(value: str) -> tuple[str, str]:
    """(store URI, pipeline name) from a component's `lineage` setting (see `scope`)."""
    data = json.loads(value)
    return data["store"], data["pipeline"]


def scope(store_uri: str, pipeline_name: str) -> str:
    """What a component is told about where to resolve its inputs: the store (no secret) and
    the pipeline that scopes every resolution."""
    return json.dumps({"store": location_uri(store_uri), "pipeline": pipeline_name}, sort_keys=True)


def backend_for_scope(value: str) -> Backend:
    store_uri, pipeline = parse_scope(value)
    return open_backend(store_uri, pipeline)
