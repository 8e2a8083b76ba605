"""Vertex AI's services faked at the GAPIC transport: the real client code builds and
type-checks every request (proto-plus refuses an unknown field or a wrong type), and what
reaches the transport is recorded in FAKE_VERTEX_DIR/requests.jsonl and answered here.

* JobService (Vertex AI Training): a CustomJob runs every replica of every worker pool as a
  local process of this image, at once, each with the CLUSTER_SPEC that Vertex AI Training
  sets (addresses on loopback); it succeeds when every replica exits 0.
* ModelService / EndpointService (the Pusher's endpoint): models and endpoints are kept in
  FAKE_VERTEX_DIR/state.json; long-running operations complete at once.
* VizierService (the Tuner on Vertex): studies and trials are kept in state.json and checked
  as the service checks them (a parameter outside the study's spec, a measurement of an
  unknown metric, completing a finished trial: refused). Suggestions are uniform random
  samples of the study's space: Vizier's own algorithm runs only in the service.
* MetadataService (Vertex ML Metadata): contexts (with parents), artifacts, executions, events
  and their attribution to contexts, kept in state.json; list filters in the API's language
  (AIP-160) for the clauses documented on its requests (attributes, `metadata.<key>.<kind>`,
  `in_context(...)`, `parent_contexts:`), an unknown clause refused, as the service would;
  QueryContextLineageSubgraph returns what is attributed to the context and the events
  between them. The offline launcher (tests/harness/launcher.py) writes runs into it as
  Vertex AI Pipelines does; the pipeline's components and the CLI read it.

The state is shared by every process of a run (the tuning job's replicas call Vizier while the
pipeline task that created the job waits), under a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
import threading

_lock = threading.Lock()  # requests.jsonl, within a process


def _record(directory: str, method: str, request) -> None:
    from google.protobuf import json_format

    body = json_format.MessageToDict(type(request).pb(request))
    with _lock, open(os.path.join(directory, "requests.jsonl"), "a") as f:
        f.write(json.dumps({"method": method, "type": type(request).__name__, "request": body}) + "\n")


@contextlib.contextmanager
def _transaction(directory: str):
    """The state, read and written back under an exclusive lock across processes."""
    path = os.path.join(directory, "state.json")
    with open(os.path.join(directory, "state.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = {"jobs": {}, "models": {}, "endpoints": {}, "studies": {}, "counter": 0, "metadata": _empty_metadata()}
        if os.path.exists(path):
            with open(path) as f:
                state.update(json.load(f))
        yield state
        with open(path + ".tmp", "w") as f:
            json.dump(state, f, indent=1)
        os.replace(path + ".tmp", path)


def _next_id(state: dict) -> str:
    state["counter"] += 1
    return str(1000 + state["counter"])


def _stub(directory: str, method: str, expected: type, answer, transaction: bool = True):
    """The transport method: checks the request's type, records it, answers it (in a state
    transaction unless the answer manages its own)."""

    def call(request, *args, **kwargs):
        if not isinstance(request, expected):
            raise TypeError(f"{method}: sent {type(request).__name__}, the API takes {expected.__name__}")
        _record(directory, method, request)
        if not transaction:
            return answer(request, None)
        with _transaction(directory) as state:
            return answer(request, state)

    return property(lambda self: call)


def _operation(response, metadata=None):
    """A finished long-running operation carrying `response`."""
    from google.longrunning import operations_pb2

    op = operations_pb2.Operation(name="operations/fake", done=True)
    op.response.Pack(type(response).pb(response))
    if metadata is not None:
        op.metadata.Pack(type(metadata).pb(metadata))
    return op


def install(directory: str) -> None:
    import google.auth
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1 as v1
    from google.cloud.aiplatform_v1.services.endpoint_service.transports.grpc import EndpointServiceGrpcTransport
    from google.cloud.aiplatform_v1.services.job_service.transports.grpc import JobServiceGrpcTransport
    from google.cloud.aiplatform_v1.services.model_service.transports.grpc import ModelServiceGrpcTransport

    os.makedirs(directory, exist_ok=True)
    project = os.environ.get("GOOGLE_CLOUD_PROJECT", "my-project")
    google.auth.default = lambda *a, **k: (AnonymousCredentials(), project)

    def create_custom_job(request: v1.CreateCustomJobRequest, _):
        job = request.custom_job
        with _transaction(directory) as state:
            name = f"{request.parent}/customJobs/{_next_id(state)}"
            state["jobs"][name] = "JOB_STATE_RUNNING"
        pools = [(f"workerpool{i}", pool) for i, pool in enumerate(job.job_spec.worker_pool_specs) if pool.replica_count]
        # Every replica's address, as Vertex AI Training lists them in CLUSTER_SPEC.
        cluster = {kind: [f"127.0.0.1:{_free_port()}" for _ in range(pool.replica_count)] for kind, pool in pools}
        logs = os.path.join(directory, "jobs", f"{name.rsplit('/', 1)[1]}-{job.display_name}")
        os.makedirs(logs)
        replicas = []
        for kind, pool in pools:
            argv = list(pool.container_spec.command) + list(pool.container_spec.args)
            for index in range(pool.replica_count):
                spec = {"cluster": cluster, "environment": "cloud", "task": {"type": kind, "index": index}}
                env = dict(os.environ, CLUSTER_SPEC=json.dumps(spec), CLOUD_ML_JOB_ID=name.rsplit("/", 1)[1])
                replicas.append((argv, env, os.path.join(logs, f"{kind}-{index}.log")))
        codes = _run_replicas(replicas)
        with open(os.path.join(directory, "training.log"), "a") as out:
            for entry in sorted(os.listdir(logs)):
                with open(os.path.join(logs, entry)) as f:
                    out.write(f"==> {name} {entry}\n{f.read()}")
        with _transaction(directory) as state:
            state["jobs"][name] = "JOB_STATE_SUCCEEDED" if not any(codes) else "JOB_STATE_FAILED"
            return v1.CustomJob(name=name, display_name=job.display_name, state=state["jobs"][name])

    def get_custom_job(request: v1.GetCustomJobRequest, state):
        return v1.CustomJob(name=request.name, state=state["jobs"][request.name])

    JobServiceGrpcTransport.create_custom_job = _stub(
        directory, "CreateCustomJob", v1.CreateCustomJobRequest, create_custom_job, transaction=False
    )
    JobServiceGrpcTransport.get_custom_job = _stub(directory, "GetCustomJob", v1.GetCustomJobRequest, get_custom_job)

    def upload_model(request: v1.UploadModelRequest, state):
        name = f"{request.parent}/models/{_next_id(state)}"
        model = v1.Model(request.model)
        model.name = name
        # What the service sets for a model served by a custom container: it can only be
        # deployed on dedicated machines (the SDK reads this to build the deployment).
        model.supported_deployment_resources_types = [v1.Model.DeploymentResourcesType.DEDICATED_RESOURCES]
        state["models"][name] = type(model).to_json(model)
        return _operation(v1.UploadModelResponse(model=name))

    def get_model(request: v1.GetModelRequest, state):
        return v1.Model.from_json(state["models"][request.name])

    def list_endpoints(request: v1.ListEndpointsRequest, state):
        endpoints = [v1.Endpoint.from_json(e) for e in state["endpoints"].values()]
        wanted = request.filter.partition("=")[2].strip('"') if "display_name" in request.filter else None
        return v1.ListEndpointsResponse(endpoints=[e for e in endpoints if wanted is None or e.display_name == wanted])

    def create_endpoint(request: v1.CreateEndpointRequest, state):
        endpoint = v1.Endpoint(request.endpoint)
        endpoint.name = f"{request.parent}/endpoints/{_next_id(state)}"
        state["endpoints"][endpoint.name] = v1.Endpoint.to_json(endpoint)
        return _operation(endpoint)

    def get_endpoint(request: v1.GetEndpointRequest, state):
        return v1.Endpoint.from_json(state["endpoints"][request.name])

    def deploy_model(request: v1.DeployModelRequest, state):
        endpoint = v1.Endpoint.from_json(state["endpoints"][request.endpoint])
        deployed = v1.DeployedModel(request.deployed_model)
        if not deployed.dedicated_resources.machine_spec.machine_type:
            raise ValueError(f"DeployModel: {deployed.model} supports only dedicated resources (no machine_spec sent)")
        deployed.id = _next_id(state)
        endpoint.deployed_models.append(deployed)
        split = {k: v for k, v in request.traffic_split.items() if k != "0"}
        if "0" in request.traffic_split:
            split[deployed.id] = request.traffic_split["0"]
        endpoint.traffic_split = split
        state["endpoints"][request.endpoint] = v1.Endpoint.to_json(endpoint)
        return _operation(v1.DeployModelResponse(deployed_model=deployed))

    def update_endpoint(request: v1.UpdateEndpointRequest, state):
        endpoint = v1.Endpoint.from_json(state["endpoints"][request.endpoint.name])
        for path in request.update_mask.paths:
            if path != "traffic_split":
                raise ValueError(f"UpdateEndpoint: the fake updates traffic_split only, not {path}")
            deployed = {d.id for d in endpoint.deployed_models}
            split = dict(request.endpoint.traffic_split)
            if set(split) - deployed or sum(split.values()) != 100:
                raise ValueError(f"UpdateEndpoint: traffic_split {split} must cover deployed models {deployed} with 100%")
            endpoint.traffic_split = split
        state["endpoints"][endpoint.name] = v1.Endpoint.to_json(endpoint)
        return endpoint

    def undeploy_model(request: v1.UndeployModelRequest, state):
        endpoint = v1.Endpoint.from_json(state["endpoints"][request.endpoint])
        kept = [d for d in endpoint.deployed_models if d.id != request.deployed_model_id]
        if len(kept) == len(endpoint.deployed_models):
            raise KeyError(f"no deployed model {request.deployed_model_id} on {request.endpoint}")
        del endpoint.deployed_models[:]
        endpoint.deployed_models.extend(kept)
        endpoint.traffic_split = dict(request.traffic_split) or {
            k: v for k, v in endpoint.traffic_split.items() if k != request.deployed_model_id
        }
        state["endpoints"][request.endpoint] = v1.Endpoint.to_json(endpoint)
        return _operation(v1.UndeployModelResponse())

    for transport, method, request_type, answer in (
        (ModelServiceGrpcTransport, "upload_model", v1.UploadModelRequest, upload_model),
        (ModelServiceGrpcTransport, "get_model", v1.GetModelRequest, get_model),
        (EndpointServiceGrpcTransport, "list_endpoints", v1.ListEndpointsRequest, list_endpoints),
        (EndpointServiceGrpcTransport, "create_endpoint", v1.CreateEndpointRequest, create_endpoint),
        (EndpointServiceGrpcTransport, "get_endpoint", v1.GetEndpointRequest, get_endpoint),
        (EndpointServiceGrpcTransport, "deploy_model", v1.DeployModelRequest, deploy_model),
        (EndpointServiceGrpcTransport, "undeploy_model", v1.UndeployModelRequest, undeploy_model),
        (EndpointServiceGrpcTransport, "update_endpoint", v1.UpdateEndpointRequest, update_endpoint),
    ):
        setattr(transport, method, _stub(directory, method, request_type, answer))
    _install_vizier(directory)
    from google.cloud.aiplatform_v1.services.metadata_service.transports.grpc import MetadataServiceGrpcTransport

    install_metadata(directory, MetadataServiceGrpcTransport)
    sys.modules[__name__].installed = True


def _run_replicas(replicas: list[tuple[list[str], dict[str, str], str]]) -> list[int]:
    """Every replica at once, each its own process of the image with its own log; their exit
    statuses. Through the tests' forkserver when there is one (the same command in a warm
    interpreter, see forkserver.py)."""
    server = os.environ.get("HARNESS_FORKSERVER")
    if server:
        import forkserver

        codes: list[int] = [1] * len(replicas)

        def one(i: int, argv: list[str], env: dict[str, str], log: str) -> None:
            codes[i] = forkserver.run(server, argv, os.getcwd(), env, log, log + ".stderr")
            with open(log, "a") as out, open(log + ".stderr") as err:
                out.write(err.read())

        threads = [threading.Thread(target=one, args=(i, *r)) for i, r in enumerate(replicas)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return codes
    running = []
    for argv, env, path in replicas:
        log = open(path, "w")
        running.append((subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    codes = [proc.wait() for proc, _ in running]
    for _, log in running:
        log.close()
    return codes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _json(message) -> str:
    """State as JSON, enums by name (state.json is read by tests and people)."""
    return type(message).to_json(message, use_integers_for_enums=False)


def _check_spec(spec) -> None:
    """What CreateStudy refuses: no metric, a parameter without exactly one value spec, an empty
    or inverted range, a log scale reaching 0, unsorted or repeated discrete values."""
    from google.api_core import exceptions

    if not spec.metrics:
        raise exceptions.InvalidArgument("study_spec.metrics: at least one metric is required")
    seen = set()
    for p in spec.parameters:
        if p.parameter_id in seen or not p.parameter_id:
            raise exceptions.InvalidArgument(f"study_spec.parameters: bad or repeated parameter_id {p.parameter_id!r}")
        seen.add(p.parameter_id)
        kinds = [
            k for k in ("double_value_spec", "integer_value_spec", "categorical_value_spec", "discrete_value_spec") if k in p
        ]
        if len(kinds) != 1:
            raise exceptions.InvalidArgument(f"parameter {p.parameter_id}: exactly one value spec, got {kinds}")
        if kinds[0] == "double_value_spec":
            low, high = p.double_value_spec.min_value, p.double_value_spec.max_value
            if not low < high or (p.scale_type.name == "UNIT_LOG_SCALE" and low <= 0):
                raise exceptions.InvalidArgument(f"parameter {p.parameter_id}: bad range [{low}, {high}] for {p.scale_type.name}")
        elif kinds[0] == "discrete_value_spec":
            values = list(p.discrete_value_spec.values)
            if not values or values != sorted(set(values)):
                raise exceptions.InvalidArgument(f"parameter {p.parameter_id}: discrete values must increase: {values}")
        elif kinds[0] == "categorical_value_spec" and not p.categorical_value_spec.values:
            raise exceptions.InvalidArgument(f"parameter {p.parameter_id}: no categories")


def _check_parameters(spec, parameters) -> None:
    """A trial's parameters: each one of the study's, with a value its spec allows."""
    from google.api_core import exceptions

    specs = {p.parameter_id: p for p in spec.parameters}
    for parameter in parameters:
        p, value = specs.get(parameter.parameter_id), parameter.value
        if p is None:
            raise exceptions.InvalidArgument(f"trial parameter {parameter.parameter_id!r} is not in the study")
        if "double_value_spec" in p:
            ok = isinstance(value, float) and p.double_value_spec.min_value <= value <= p.double_value_spec.max_value
        elif "discrete_value_spec" in p:
            ok = isinstance(value, float) and any(math.isclose(value, v) for v in p.discrete_value_spec.values)
        elif "categorical_value_spec" in p:
            ok = value in list(p.categorical_value_spec.values)
        else:
            ok = isinstance(value, float) and float(value).is_integer()
        if not ok:
            raise exceptions.InvalidArgument(f"trial parameter {parameter.parameter_id}={value!r} is outside its spec")


def _sample(spec, rng: random.Random) -> list:
    from google.cloud.aiplatform_v1 import Trial

    chosen = []
    for p in spec.parameters:
        if "double_value_spec" in p:
            low, high = p.double_value_spec.min_value, p.double_value_spec.max_value
            if p.scale_type.name == "UNIT_LOG_SCALE":
                value = math.exp(rng.uniform(math.log(low), math.log(high)))
            else:
                value = rng.uniform(low, high)
        elif "discrete_value_spec" in p:
            value = rng.choice(list(p.discrete_value_spec.values))
        elif "categorical_value_spec" in p:
            value = rng.choice(list(p.categorical_value_spec.values))
        else:
            value = float(rng.randint(p.integer_value_spec.min_value, p.integer_value_spec.max_value))
        chosen.append(Trial.Parameter(parameter_id=p.parameter_id, value=value))
    return chosen


def _install_vizier(directory: str) -> None:
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1 as v1
    from google.cloud.aiplatform_v1.services.vizier_service.transports.grpc import VizierServiceGrpcTransport

    def study(state, name: str) -> dict:
        if name not in state["studies"]:
            raise exceptions.NotFound(f"study {name}")
        return state["studies"][name]

    def trial_of(state, name: str) -> tuple[dict, int, v1.Trial]:
        entry = study(state, name.rsplit("/trials/", 1)[0])
        for i, t in enumerate(entry["trials"]):
            if json.loads(t)["name"] == name:
                return entry, i, v1.Trial.from_json(t)
        raise exceptions.NotFound(f"trial {name}")

    def spec_of(entry: dict):
        return v1.Study.from_json(entry["study"]).study_spec

    def active(trial: v1.Trial) -> None:
        if trial.state != v1.Trial.State.ACTIVE:
            raise exceptions.FailedPrecondition(f"trial {trial.name} is {trial.state.name}, not ACTIVE")

    def new_trial(state, name: str, parameters, client_id: str = "") -> v1.Trial:
        entry = study(state, name)
        trial_id = str(len(entry["trials"]) + 1)
        trial = v1.Trial(
            name=f"{name}/trials/{trial_id}", id=trial_id, state=v1.Trial.State.ACTIVE, parameters=parameters, client_id=client_id
        )
        entry["trials"].append(_json(trial))
        return trial

    def create_study(request: v1.CreateStudyRequest, state):
        _check_spec(request.study.study_spec)
        if any(v1.Study.from_json(s["study"]).display_name == request.study.display_name for s in state["studies"].values()):
            raise exceptions.AlreadyExists(f"study {request.study.display_name!r} exists in {request.parent}")
        created = v1.Study(request.study)
        created.name = f"{request.parent}/studies/{_next_id(state)}"
        created.state = v1.Study.State.ACTIVE
        state["studies"][created.name] = {"study": _json(created), "trials": []}
        return created

    def lookup_study(request: v1.LookupStudyRequest, state):
        for name, entry in state["studies"].items():
            found = v1.Study.from_json(entry["study"])
            if name.startswith(request.parent + "/") and found.display_name == request.display_name:
                return found
        raise exceptions.NotFound(f"no study named {request.display_name!r} in {request.parent}")

    def create_trial(request: v1.CreateTrialRequest, state):
        _check_parameters(spec_of(study(state, request.parent)), request.trial.parameters)
        return new_trial(state, request.parent, request.trial.parameters)

    def suggest_trials(request: v1.SuggestTrialsRequest, state):
        entry = study(state, request.parent)
        trials = [v1.Trial.from_json(t) for t in entry["trials"]]
        # A client asking again while its trial is still active gets that trial (Vizier's
        # contract for client_id).
        pending = [t for t in trials if t.client_id == request.client_id and t.state == v1.Trial.State.ACTIVE]
        if not pending:
            rng = random.Random(f"{request.parent}/{len(trials)}")
            pending = [
                new_trial(state, request.parent, _sample(spec_of(entry), rng), request.client_id)
                for _ in range(request.suggestion_count)
            ]
        return _operation(
            v1.SuggestTrialsResponse(trials=pending, study_state=v1.Study.State.ACTIVE),
            v1.SuggestTrialsMetadata(client_id=request.client_id),
        )

    def add_trial_measurement(request: v1.AddTrialMeasurementRequest, state):
        entry, i, trial = trial_of(state, request.trial_name)
        active(trial)
        metrics = {m.metric_id for m in spec_of(entry).metrics}
        unknown = [m.metric_id for m in request.measurement.metrics if m.metric_id not in metrics]
        if unknown:
            raise exceptions.InvalidArgument(f"measurement of metrics the study does not have: {unknown}")
        trial.measurements.append(request.measurement)
        entry["trials"][i] = _json(trial)
        return trial

    def complete_trial(request: v1.CompleteTrialRequest, state):
        entry, i, trial = trial_of(state, request.name)
        active(trial)
        if request.trial_infeasible:
            trial.state, trial.infeasible_reason = v1.Trial.State.INFEASIBLE, request.infeasible_reason
        else:
            metrics = {m.metric_id for m in spec_of(entry).metrics}
            final = request.final_measurement if "final_measurement" in request else None
            if final is None and not trial.measurements:
                raise exceptions.InvalidArgument(f"trial {request.name}: no final measurement and no measurement")
            if final is not None and {m.metric_id for m in final.metrics} != metrics:
                raise exceptions.InvalidArgument(f"final measurement must have the study's metrics {sorted(metrics)}")
            trial.state = v1.Trial.State.SUCCEEDED
            trial.final_measurement = final if final is not None else trial.measurements[-1]
        entry["trials"][i] = _json(trial)
        return trial

    def list_trials(request: v1.ListTrialsRequest, state):
        return v1.ListTrialsResponse(trials=[v1.Trial.from_json(t) for t in study(state, request.parent)["trials"]])

    for method, request_type, answer in (
        ("create_study", v1.CreateStudyRequest, create_study),
        ("lookup_study", v1.LookupStudyRequest, lookup_study),
        ("create_trial", v1.CreateTrialRequest, create_trial),
        ("suggest_trials", v1.SuggestTrialsRequest, suggest_trials),
        ("add_trial_measurement", v1.AddTrialMeasurementRequest, add_trial_measurement),
        ("complete_trial", v1.CompleteTrialRequest, complete_trial),
        ("list_trials", v1.ListTrialsRequest, list_trials),
    ):
        setattr(VizierServiceGrpcTransport, method, _stub(directory, method, request_type, answer))


# --- Vertex ML Metadata -------------------------------------------------------------------------


def _empty_metadata() -> dict:
    return {"contexts": {}, "parents": {}, "artifacts": {}, "executions": {}, "events": [], "attributed": {}}


def _now():
    import datetime

    return datetime.datetime.now(datetime.timezone.utc)


_CLAUSE = re.compile(
    r'^(?:(?P<attr>name|display_name|schema_title|uri|state)\s*=\s*"?(?P<value>[^"]*)"?'
    r'|metadata\.(?P<key>"[^"]+"|\w+)\.(?P<kind>string_value|number_value|bool_value)\s*=\s*(?P<mvalue>"[^"]*"|[-\w.]+)'
    r'|in_context\("(?P<context>[^"]+)"\)'
    r'|parent_contexts:"(?P<parent>[^"]+)")$'
)


def _filter(expression: str, kind: str):
    """A predicate (resource dict, metadata state) for a list filter: clauses joined by AND, as
    the Vertex ML Metadata requests document them. Anything else is refused."""
    from google.api_core import exceptions

    clauses = [c.strip() for c in expression.split(" AND ")] if expression.strip() else []
    parsed = []
    for clause in clauses:
        m = _CLAUSE.match(clause)
        if m is None or (m.group("parent") and kind != "contexts") or (m.group("context") and kind == "contexts"):
            raise exceptions.InvalidArgument(f"List{kind.capitalize()}: filter clause not supported: {clause!r}")
        parsed.append(m)

    def test(resource: dict, name: str, md: dict) -> bool:
        for m in parsed:
            if m.group("attr"):
                value = resource.get(
                    {"display_name": "displayName", "schema_title": "schemaTitle"}.get(m.group("attr"), m.group("attr"))
                )
                if str(value) != m.group("value"):
                    return False
            elif m.group("key"):
                key = m.group("key").strip('"')
                value = resource.get("metadata", {}).get(key)
                wanted = m.group("mvalue")
                if m.group("kind") == "number_value":
                    if not isinstance(value, (int, float)) or float(value) != float(wanted):
                        return False
                elif m.group("kind") == "bool_value":
                    if value is not (wanted == "true"):
                        return False
                elif value != wanted.strip('"'):
                    return False
            elif m.group("context"):
                if name not in md["attributed"].get(m.group("context"), {}).get(kind, []):
                    return False
            elif m.group("parent") not in md["parents"].get(name, []):
                return False
        return True

    return test


def install_metadata(directory: str, transport: type) -> None:
    """Vertex ML Metadata's service on `transport` (a MetadataService transport class)."""
    from google.api_core import exceptions
    from google.cloud import aiplatform_v1 as v1

    def store(state) -> dict:
        return state.setdefault("metadata", _empty_metadata())

    def get(state, kind: str, name: str, cls):
        found = store(state)[kind].get(name)
        if found is None:
            raise exceptions.NotFound(f"{kind[:-1]} {name} not found")
        return cls.from_json(found)

    def create(kind: str, cls, field: str, id_field: str):
        def answer(request, state):
            md = store(state)
            resource = cls(getattr(request, field))
            resource_id = getattr(request, id_field) or _next_id(state)
            resource.name = f"{request.parent}/{kind}/{resource_id}"
            if resource.name in md[kind]:
                raise exceptions.AlreadyExists(f"{resource.name} already exists")
            resource.create_time = resource.update_time = _now()
            md[kind][resource.name] = _json(resource)
            return resource

        return answer

    def update(kind: str, cls, field: str):
        def answer(request, state):
            resource = getattr(request, field)
            stored = get(state, kind, resource.name, cls)
            for path in request.update_mask.paths or ["state", "metadata"]:
                if path == "metadata":
                    from google.protobuf import json_format

                    # The service merges the keys sent into the stored metadata.
                    cls.pb(stored).metadata.update(json_format.MessageToDict(cls.pb(resource).metadata))
                else:
                    setattr(stored, path, getattr(resource, path))
            stored.update_time = _now()
            store(state)[kind][stored.name] = _json(stored)
            return stored

        return answer

    def listing(kind: str, cls, response, field: str):
        def answer(request, state):
            md = store(state)
            test = _filter(request.filter, kind)
            found = [
                cls.from_json(text)
                for name, text in md[kind].items()
                if name.startswith(request.parent + "/") and test(json.loads(text), name, md)
            ]
            return response(**{field: found})

        return answer

    def add_context_children(request: v1.AddContextChildrenRequest, state):
        md = store(state)
        get(state, "contexts", request.context, v1.Context)
        for child in request.child_contexts:
            get(state, "contexts", child, v1.Context)
            parents = md["parents"].setdefault(child, [])
            if request.context not in parents:
                parents.append(request.context)
        return v1.AddContextChildrenResponse()

    def add_to_context(request: v1.AddContextArtifactsAndExecutionsRequest, state):
        md = store(state)
        get(state, "contexts", request.context, v1.Context)
        attributed = md["attributed"].setdefault(request.context, {"artifacts": [], "executions": []})
        for kind, names in (("artifacts", request.artifacts), ("executions", request.executions)):
            for name in names:
                if name not in md[kind]:
                    raise exceptions.NotFound(f"{name} not found")
                if name not in attributed[kind]:
                    attributed[kind].append(name)
        return v1.AddContextArtifactsAndExecutionsResponse()

    def add_execution_events(request: v1.AddExecutionEventsRequest, state):
        md = store(state)
        get(state, "executions", request.execution, v1.Execution)
        for event in request.events:
            if event.artifact not in md["artifacts"]:
                raise exceptions.NotFound(f"artifact {event.artifact} not found")
            if event.type_ == v1.Event.Type.TYPE_UNSPECIFIED:
                raise exceptions.InvalidArgument("event type is required")
            recorded = v1.Event(event)
            recorded.execution = request.execution
            recorded.event_time = _now()
            md["events"].append(_json(recorded))
        return v1.AddExecutionEventsResponse()

    def subgraph(md: dict, artifacts: list[str], executions: list[str]) -> v1.LineageSubgraph:
        events = [v1.Event.from_json(e) for e in md["events"]]
        events = [e for e in events if e.artifact in artifacts and e.execution in executions]
        return v1.LineageSubgraph(
            artifacts=[v1.Artifact.from_json(md["artifacts"][a]) for a in artifacts],
            executions=[v1.Execution.from_json(md["executions"][e]) for e in executions],
            events=events,
        )

    def query_context(request: v1.QueryContextLineageSubgraphRequest, state):
        md = store(state)
        get(state, "contexts", request.context, v1.Context)
        attributed = md["attributed"].get(request.context, {"artifacts": [], "executions": []})
        return subgraph(md, attributed["artifacts"], attributed["executions"])

    def query_execution(request: v1.QueryExecutionInputsAndOutputsRequest, state):
        md = store(state)
        get(state, "executions", request.execution, v1.Execution)
        linked = [v1.Event.from_json(e).artifact for e in md["events"] if json.loads(e)["execution"] == request.execution]
        return subgraph(md, list(dict.fromkeys(linked)), [request.execution])

    for method, request_type, answer in (
        ("create_context", v1.CreateContextRequest, create("contexts", v1.Context, "context", "context_id")),
        ("get_context", v1.GetContextRequest, lambda r, s: get(s, "contexts", r.name, v1.Context)),
        ("list_contexts", v1.ListContextsRequest, listing("contexts", v1.Context, v1.ListContextsResponse, "contexts")),
        ("add_context_children", v1.AddContextChildrenRequest, add_context_children),
        ("create_artifact", v1.CreateArtifactRequest, create("artifacts", v1.Artifact, "artifact", "artifact_id")),
        ("get_artifact", v1.GetArtifactRequest, lambda r, s: get(s, "artifacts", r.name, v1.Artifact)),
        ("update_artifact", v1.UpdateArtifactRequest, update("artifacts", v1.Artifact, "artifact")),
        ("list_artifacts", v1.ListArtifactsRequest, listing("artifacts", v1.Artifact, v1.ListArtifactsResponse, "artifacts")),
        ("create_execution", v1.CreateExecutionRequest, create("executions", v1.Execution, "execution", "execution_id")),
        ("get_execution", v1.GetExecutionRequest, lambda r, s: get(s, "executions", r.name, v1.Execution)),
        ("update_execution", v1.UpdateExecutionRequest, update("executions", v1.Execution, "execution")),
        (
            "list_executions",
            v1.ListExecutionsRequest,
            listing("executions", v1.Execution, v1.ListExecutionsResponse, "executions"),
        ),
        ("add_context_artifacts_and_executions", v1.AddContextArtifactsAndExecutionsRequest, add_to_context),
        ("add_execution_events", v1.AddExecutionEventsRequest, add_execution_events),
        ("query_context_lineage_subgraph", v1.QueryContextLineageSubgraphRequest, query_context),
        ("query_execution_inputs_and_outputs", v1.QueryExecutionInputsAndOutputsRequest, query_execution),
    ):
        setattr(transport, method, _stub(directory, method, request_type, answer))


def metadata_client(directory: str):
    """A MetadataServiceClient answered by this fake, without patching the process's transport
    class (for the test process, which runs other tests too)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform_v1 import MetadataServiceClient
    from google.cloud.aiplatform_v1.services.metadata_service.transports.grpc import MetadataServiceGrpcTransport

    os.makedirs(directory, exist_ok=True)
    transport = type("FakeMetadataTransport", (MetadataServiceGrpcTransport,), {})
    install_metadata(directory, transport)
    return MetadataServiceClient(transport=transport(credentials=AnonymousCredentials()))
