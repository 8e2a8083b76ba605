"""Vertex AI's services faked at the GAPIC transport: the real client code builds and
type-checks every request (proto-plus refuses an unknown field or a wrong type), and what
reaches the transport is recorded in FAKE_VERTEX_DIR/requests.jsonl and answered here.

* JobService (Vertex AI Training): a CustomJob runs its first worker pool's container
  command locally, in this image, as Vertex Training would run it in the image; it succeeds
  or fails with the command.
* ModelService / EndpointService (the Pusher's endpoint): models and endpoints are kept in
  FAKE_VERTEX_DIR/state.json; long-running operations complete at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

_lock = threading.Lock()


def _record(directory: str, method: str, request) -> None:
    from google.protobuf import json_format

    body = json_format.MessageToDict(type(request).pb(request))
    with _lock, open(os.path.join(directory, "requests.jsonl"), "a") as f:
        f.write(json.dumps({"method": method, "type": type(request).__name__, "request": body}) + "\n")


def _state(directory: str) -> dict:
    path = os.path.join(directory, "state.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"jobs": {}, "models": {}, "endpoints": {}, "counter": 0}


def _save(directory: str, state: dict) -> None:
    with open(os.path.join(directory, "state.json"), "w") as f:
        json.dump(state, f, indent=1)


def _next_id(state: dict) -> str:
    state["counter"] += 1
    return str(1000 + state["counter"])


def _stub(directory: str, method: str, expected: type, answer):
    def call(request, *args, **kwargs):
        if not isinstance(request, expected):
            raise TypeError(f"{method}: sent {type(request).__name__}, the API takes {expected.__name__}")
        _record(directory, method, request)
        with _lock:
            state = _state(directory)
            response = answer(request, state)
            _save(directory, state)
        return response

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

    def create_custom_job(request: v1.CreateCustomJobRequest, state):
        job = request.custom_job
        pool = job.job_spec.worker_pool_specs[0]
        argv = list(pool.container_spec.command) + list(pool.container_spec.args)
        with open(os.path.join(directory, "training.log"), "a") as log:
            proc = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT)
        name = f"{request.parent}/customJobs/{_next_id(state)}"
        succeeded = proc.returncode == 0
        state["jobs"][name] = "JOB_STATE_SUCCEEDED" if succeeded else "JOB_STATE_FAILED"
        return v1.CustomJob(name=name, display_name=job.display_name, state=state["jobs"][name])

    def get_custom_job(request: v1.GetCustomJobRequest, state):
        return v1.CustomJob(name=request.name, state=state["jobs"][request.name])

    JobServiceGrpcTransport.create_custom_job = _stub(directory, "CreateCustomJob", v1.CreateCustomJobRequest, create_custom_job)
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
    ):
        setattr(transport, method, _stub(directory, method, request_type, answer))
    sys.modules[__name__].installed = True
