"""The Vertex AI path, offline: compile, validate the spec, build and submit the job with the
aiplatform client faked only at its network boundary (the gapic create_pipeline_job call)."""

from __future__ import annotations

import difflib
import json
import os
import pathlib
import re

import pytest
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

import runner
from helpers import EXPECTED_EDGES, ROOT
from modules import code
from pipeline import pipeline as P
from pipeline.configs import ConfigError
from runners import vertex

pytestmark = pytest.mark.vertex

GOLDEN = pathlib.Path(__file__).parent / "golden" / "vertex_pipeline.json"
SETTINGS = dict(
    project="my-project",
    region="europe-west4",
    pipeline_root="gs://my-bucket/tfx",
    image="europe-west4-docker.pkg.dev/my-project/tfx/taxi:1.0",
    service_account="pipelines@my-project.iam.gserviceaccount.com",
    data_root="gs://my-bucket/data",
    dataflow_machine_type="n1-highmem-4",
    dataflow_max_workers=7,
    training_machine_type="n1-standard-16",
    training_accelerator_type="NVIDIA_TESLA_T4",
    training_accelerator_count=1,
    endpoint_name="taxi-endpoint",
    serving_image="europe-west4-docker.pkg.dev/my-project/tfx/taxi-serving:1.0",
    traffic_percentage=50,
)
BEAM_COMPONENTS = (P.EXAMPLE_GEN, P.STATISTICS_GEN, P.TRANSFORM, P.EVALUATOR)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = vertex.compile_pipeline(vertex.VertexConfig(**SETTINGS), str(tmp_path_factory.mktemp("spec") / "pipeline.json"))
    with open(path) as f:
        job = json.load(f)
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    return path, job, spec


def executor(spec, task: str):
    name = spec.root.dag.tasks[task].component_ref.name
    return spec.deployment_spec["executors"][spec.components[name].executor_label]


def custom_config(spec, task: str) -> dict:
    value = spec.root.dag.tasks[task].inputs.parameters["custom_config"].runtime_value
    # TFX 1.16 writes the deprecated `constant_value` form; newer compilers write `constant`.
    text = value.constant_value.string_value if value.HasField("constant_value") else value.constant.string_value
    return json.loads(text)


def test_tasks_and_edges_are_the_local_pipelines(compiled):
    _, _, spec = compiled
    edges: dict[str, set[str]] = {}
    for name, task in spec.root.dag.tasks.items():
        edges.setdefault(name, set()).update(set(task.dependent_tasks) - {name})
    assert edges == EXPECTED_EDGES


def test_every_container_runs_the_configured_image(compiled):
    _, _, spec = compiled
    images = {name: e["container"]["image"] for name, e in spec.deployment_spec["executors"].items() if "container" in e}
    # One topology: no resolver task, every task a container of the image.
    assert len(images) == len(EXPECTED_EDGES)
    assert set(images.values()) == {SETTINGS["image"]}


def test_dataflow_args_reach_every_beam_component(compiled):
    _, _, spec = compiled
    for task in BEAM_COMPONENTS:
        args = list(executor(spec, task)["container"]["args"])
        for expected in (
            "--runner=DataflowRunner",
            "--project=my-project",
            "--region=europe-west4",
            "--temp_location=gs://my-bucket/tfx/tmp",
            "--machine_type=n1-highmem-4",
            "--max_num_workers=7",
            "--disk_size_gb=50",  # the ~12 GB image needs more than Dataflow's default disk
            f"--sdk_container_image={SETTINGS['image']}",
            f"--service_account_email={SETTINGS['service_account']}",
        ):
            assert expected in args, (task, expected)


def test_trainer_runs_on_vertex_training(compiled):
    _, _, spec = compiled
    args = list(executor(spec, P.TRAINER)["container"]["args"])
    # TFX's Vertex Training executor, resolving its inputs first (pipeline/vertex_trainer.py).
    assert args[args.index("--executor_class_path") + 1] == "pipeline.vertex_trainer.Executor"
    config = custom_config(spec, P.TRAINER)
    assert config["ai_platform_enable_vertex"] is True
    assert config["ai_platform_vertex_region"] == "europe-west4"
    training = config["ai_platform_training_args"]
    assert training["project"] == "my-project"
    (pool,) = training["job_spec"]["worker_pool_specs"]
    assert pool["machine_spec"] == {
        "machine_type": "n1-standard-16",
        "accelerator_type": "NVIDIA_TESLA_T4",
        "accelerator_count": 1,
    }
    assert pool["container_spec"]["image_uri"] == SETTINGS["image"]
    assert training["job_spec"]["service_account"] == SETTINGS["service_account"]
    assert "hparams" in config  # the model's settings travel with the Vertex ones


def task_parameter(spec, task: str, name: str) -> str:
    value = spec.root.dag.tasks[task].inputs.parameters[name].runtime_value
    return value.constant_value.string_value if value.HasField("constant_value") else value.constant.string_value


def test_cross_run_inputs_are_resolved_by_the_components_in_this_pipelines_vertex_store(compiled):
    """No resolver task queries the region's whole store: Transform, the Trainer, the Evaluator
    and the gate resolve the window, warm start, tuning, baseline and drift reference in Vertex
    ML Metadata, scoped to this pipeline's name."""
    _, job, spec = compiled
    assert not [e for e in spec.deployment_spec["executors"].values() if "resolver" in e]
    assert "hyperparameters" not in spec.root.dag.tasks[P.TRAINER].inputs.artifacts
    scope = {"store": "vertex://my-project/europe-west4", "pipeline": "taxi-big-tipper"}
    assert json.loads(custom_config(spec, P.TRANSFORM)["lineage"]) == scope
    assert json.loads(custom_config(spec, P.TRAINER)["lineage"]) == scope
    for task in (P.EVALUATOR, P.DATA_GATE):
        assert json.loads(task_parameter(spec, task, "lineage")) == scope
    classes = {
        task: (lambda a: a[a.index("--executor_class_path") + 1])(list(executor(spec, task)["container"]["args"]))
        for task in (P.TRANSFORM, P.TRAINER, P.EVALUATOR)
    }
    assert classes == {
        P.TRANSFORM: "pipeline.resolution.TransformExecutor",
        P.TRAINER: "pipeline.vertex_trainer.Executor",
        P.EVALUATOR: "pipeline.resolution.EvaluatorExecutor",
    }


def test_tuning_runs_parallel_trials_on_vertex_training_chosen_by_vizier(tmp_path):
    settings = {**SETTINGS, "tune_trials": 8, "tune_parallel_trials": 3}
    job = json.loads(pathlib.Path(vertex.compile_pipeline(vertex.VertexConfig(**settings), str(tmp_path / "t.json"))).read_text())
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    args = list(executor(spec, P.TUNER)["container"]["args"])
    # TFX's Vertex Tuner executor, the trials trained on the window (pipeline/resolution.py).
    assert args[args.index("--executor_class_path") + 1] == "pipeline.vertex_trainer.TunerExecutor"
    from tfx.extensions.google_cloud_ai_platform.tuner import executor as tfx_vertex_tuner

    from pipeline import vertex_trainer

    assert issubclass(vertex_trainer.TunerExecutor, tfx_vertex_tuner.Executor)
    assert json.loads(task_parameter(spec, P.TUNER, "tune_args")) == {"num_parallel_trials": 3}
    config = custom_config(spec, P.TUNER)
    assert config["max_trials"] == 8 and config["ai_platform_enable_vertex"] is True
    assert config["vizier"] == {"project": "my-project", "region": "europe-west4", "study_prefix": "taxi-big-tipper"}
    job_spec = config["ai_platform_tuning_args"]["job_spec"]
    # The primary replica (which also hosts the chief oracle) and two more: three trials at once,
    # on the training machines.
    assert [p["replica_count"] for p in job_spec["worker_pool_specs"]] == [1, 2]
    trainer_pool = custom_config(spec, P.TRAINER)["ai_platform_training_args"]["job_spec"]["worker_pool_specs"][0]
    assert all(p["machine_spec"] == trainer_pool["machine_spec"] for p in job_spec["worker_pool_specs"])
    assert job_spec["service_account"] == SETTINGS["service_account"]
    trainer_inputs = spec.root.dag.tasks[P.TRAINER].inputs.artifacts
    assert trainer_inputs["hyperparameters"].task_output_artifact.producer_task == P.TUNER


def test_no_more_tuning_replicas_than_trials(tmp_path):
    cfg = vertex.VertexConfig(**{**SETTINGS, "tune_trials": 2, "tune_parallel_trials": 4}).pipeline_config()
    assert cfg.tune_parallel_trials == 2


def test_pusher_deploys_to_the_vertex_endpoint(compiled):
    _, _, spec = compiled
    args = list(executor(spec, P.PUSHER)["container"]["args"])
    # TFX's Vertex Pusher, with our traffic policy on top (pipeline/vertex_pusher.py).
    assert args[args.index("--executor_class_path") + 1] == "pipeline.vertex_pusher.Executor"
    from tfx.extensions.google_cloud_ai_platform.pusher import executor as tfx_vertex_pusher

    from pipeline import vertex_pusher

    assert issubclass(vertex_pusher.Executor, tfx_vertex_pusher.Executor)
    config = custom_config(spec, P.PUSHER)
    # This project's server in its own container: the same contract as `runner.py serve`.
    assert config["ai_platform_vertex_container_image_uri"] == SETTINGS["serving_image"]
    serving = config["ai_platform_serving_args"]
    assert serving["endpoint_name"] == "taxi-endpoint"
    assert serving["project_id"] == "my-project"
    assert serving["traffic_percentage"] == 50


def test_no_local_path_leaks_into_the_spec(compiled):
    path, _, _ = compiled
    text = open(path).read()
    for local in (str(ROOT), os.path.dirname(path), os.path.expanduser("~"), "/tmp/"):
        assert local not in text
    assert "module_file" not in text  # user code is referenced by module path, in the image
    assert P.PREPROCESSING_FN in text and P.RUN_FN in text


def _normalized(job: dict) -> str:
    """The spec with what legitimately changes per build masked (code digest, versions)."""
    text = json.dumps(job, indent=1, sort_keys=True)
    text = text.replace(code.fingerprint(code.TRANSFORM_CODE), "<transform-code>")
    text = text.replace(code.fingerprint(code.TRAINER_CODE), "<trainer-code>")
    job = json.loads(text)
    job.pop("labels", None)
    job["pipelineSpec"].pop("sdkVersion", None)
    return json.dumps(job, indent=1, sort_keys=True) + "\n"


def test_spec_matches_the_golden_file(compiled):
    _, job, _ = compiled
    got = _normalized(job)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(got)
    want = GOLDEN.read_text()
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True), "golden", "compiled", n=2))
        pytest.fail(f"compiled spec differs from {GOLDEN.name} (UPDATE_GOLDEN=1 to accept):\n{diff}")


def test_dry_run_is_the_request_submit_sends(compiled, monkeypatch):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform_v1 import CreatePipelineJobRequest
    from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient

    path, _, _ = compiled
    vcfg = vertex.VertexConfig(**SETTINGS)
    job = vertex.build_job(vcfg, path, credentials=AnonymousCredentials())
    dry = vertex.job_request(vcfg, job)

    sent = {}

    def fake_create(self, *, parent, pipeline_job, pipeline_job_id, **kwargs):
        request = CreatePipelineJobRequest(parent=parent, pipeline_job=pipeline_job, pipeline_job_id=pipeline_job_id)
        sent.update(json_format.MessageToDict(CreatePipelineJobRequest.pb(request)))
        created = type(pipeline_job)()
        created._pb.CopyFrom(pipeline_job._pb)
        created.name = f"{parent}/pipelineJobs/{pipeline_job_id}"
        return created

    monkeypatch.setattr(PipelineServiceClient, "create_pipeline_job", fake_create)
    # Before creating the job, the SDK checks that the pipeline root's bucket exists and belongs
    # to the project (Cloud Storage and Resource Manager calls): answered here at those
    # clients' boundaries, never sent.
    import google.auth
    from google.cloud import resourcemanager_v3, storage

    gets = []

    def fake_get_resource(self, path, *args, **kwargs):
        gets.append(path)
        return {"name": path.rsplit("/", 1)[-1], "projectNumber": "123456789"}

    def fake_get_project(self, request=None, *, name=None, **kwargs):
        gets.append(name)
        return resourcemanager_v3.Project(name="projects/123456789", project_id="my-project")

    monkeypatch.setattr(storage.Client, "_get_resource", fake_get_resource)
    monkeypatch.setattr(resourcemanager_v3.ProjectsClient, "get_project", fake_get_project)
    monkeypatch.setattr(google.auth, "default", lambda *a, **k: (AnonymousCredentials(), "my-project"))
    vertex.submit(vcfg, job)
    assert gets == ["/b/my-bucket", "/b/my-bucket", "projects/my-project"]
    assert sent == dry
    assert sent["parent"] == "projects/my-project/locations/europe-west4"
    assert sent["pipelineJob"]["serviceAccount"] == SETTINGS["service_account"]
    assert sent["pipelineJob"]["runtimeConfig"]["gcsOutputDirectory"] == "gs://my-bucket/tfx"
    # The spec's default for the runtime parameter: accept nothing.
    assert sent["pipelineJob"]["runtimeConfig"]["parameters"] == {"accept_anomalies": {"stringValue": "[]"}}


@pytest.mark.parametrize(
    "tuning, display_name",
    [
        ([], "taxi-big-tipper-schedule"),
        # The weekly tuning beside the daily training: its own spec and schedule.
        (["--tune", "8", "--parallel-trials", "2"], "taxi-big-tipper-tuning-schedule"),
    ],
)
def test_dry_run_cli_prints_the_request(tmp_path, capsys, tuning, display_name):
    config = tmp_path / "vertex.json"
    config.write_text(json.dumps({k: v for k, v in SETTINGS.items()}))
    spec = tmp_path / "pipeline.json"
    argv = ["vertex", "submit", "--config", str(config), "--output", str(spec), "--schedule-cron", "0 3 * * 1", "--dry-run"]
    assert runner.main(argv + tuning) == 0
    request = json.loads(capsys.readouterr().out)
    # Exactly a CreateScheduleRequest (an unknown key would not parse), as submit builds it.
    from google.cloud.aiplatform_v1 import CreateScheduleRequest

    json_format.ParseDict(request, CreateScheduleRequest.pb(CreateScheduleRequest()))
    assert request["parent"] == "projects/my-project/locations/europe-west4"
    schedule = request["schedule"]
    assert schedule["cron"] == "0 3 * * 1"
    assert schedule["maxConcurrentRunCount"] == "1"
    assert schedule["displayName"] == display_name
    job = schedule["createPipelineJobRequest"]["pipelineJob"]
    assert job["pipelineSpec"]["pipelineInfo"]["name"] == "taxi-big-tipper"
    assert (P.TUNER in job["pipelineSpec"]["root"]["dag"]["tasks"]) == bool(tuning)
    assert job["serviceAccount"] == SETTINGS["service_account"]
    assert spec.is_file()


def test_accepted_anomalies_are_a_runtime_parameter_of_the_job(tmp_path, capsys):
    config = tmp_path / "vertex.json"
    config.write_text(json.dumps(SETTINGS))
    argv = ["vertex", "submit", "--config", str(config), "--output", str(tmp_path / "p.json"), "--dry-run"]
    assert runner.main([*argv, "--accept-anomalies", "payment_type", "fare:FEATURE_TYPE_LOW_NUMBER_PRESENT"]) == 0
    job = json.loads(capsys.readouterr().out)["pipelineJob"]
    accepted = json.loads(job["runtimeConfig"]["parameters"]["accept_anomalies"]["stringValue"])
    assert accepted == ["fare:FEATURE_TYPE_LOW_NUMBER_PRESENT", "payment_type"]
    # The compiled spec is unchanged: the gate reads the parameter at run time.
    gate = job["pipelineSpec"]["root"]["dag"]["tasks"]["data_gate"]["inputs"]["parameters"]["accept"]
    assert gate == {"componentInputParameter": "accept_anomalies"}
    assert runner.main([*argv, "--accept-anomalies", "fare:not a kind"]) == 2
    assert "'fare:not a kind' is not FEATURE, FEATURE:KIND or *" in capsys.readouterr().err


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"project": ""}, "vertex.project"),
        ({"project": "My Project"}, "vertex.project"),
        ({"region": "us central"}, "vertex.region"),
        ({"region": "uscentral1"}, "vertex.region"),
        ({"pipeline_root": "/local/tfx"}, "vertex.pipeline_root"),
        ({"data_root": "/local/data"}, "vertex.data_root"),
        ({"bigquery_query": "SELECT 1"}, "vertex.bigquery_query/data_root"),
        ({"data_root": None}, "vertex.bigquery_query/data_root"),
        ({"image": ""}, "vertex.image"),
        ({"service_account": "me@example.com"}, "vertex.service_account"),
        ({"training_accelerator_count": 0}, "vertex.training_accelerator_count"),
        ({"traffic_percentage": 150}, "vertex.traffic_percentage"),
        ({"schedule_cron": "every day"}, "vertex.schedule_cron"),
        ({"serving_image": None}, "vertex.serving_image"),
        ({"dataflow_max_workers": "10"}, "vertex.dataflow_max_workers: must be int, got '10'"),
        ({"traffic_percentage": True}, "vertex.traffic_percentage: must be int"),
        ({"pipeline_name": "Taxi_Pipeline"}, "vertex.pipeline_name"),
        ({"training_accelerator_type": "NVIDIA_TESLA_T5"}, "vertex.training_accelerator_type: unknown accelerator"),
        ({"schedule_cron": "CRON_TZ=Mars/Olympus 0 3 * * *"}, "vertex.schedule_cron: unknown time zone 'Mars/Olympus'"),
        ({"schedule_cron": "CRON_TZ=Europe/Paris 0 3 * *"}, "vertex.schedule_cron: not a 5-field"),
        ({"endpoint_name": ""}, "vertex.endpoint_name: is empty"),
        ({"dataflow_disk_size_gb": 10}, "vertex.dataflow_disk_size_gb: must be at least 30"),
        ({"hparams": {"dropout": 2}}, "vertex.hparams"),
        ({"colour": "blue"}, "vertex: unknown settings: colour"),
        ({"tune_trials": -1}, "vertex.tune_trials: must be 0 (no tuning) or more"),
        ({"tune_parallel_trials": 0}, "vertex.tune_parallel_trials: must be at least 1"),
    ],
)
def test_bad_settings_fail_naming_the_field(changes, field, tmp_path, capsys):
    with pytest.raises(ConfigError, match=f"^{re.escape(field)}"):
        vertex.VertexConfig.from_mapping({**SETTINGS, **changes})
    # From a config file through the CLI: one line, exit 2, nothing compiled.
    config = tmp_path / "vertex.json"
    config.write_text(json.dumps({**SETTINGS, **changes}))
    out = tmp_path / "spec.json"
    assert runner.main(["vertex", "compile", "--config", str(config), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {field}") and len(err.splitlines()) == 1
    assert not out.exists()


def test_the_example_config_is_valid():
    vcfg = vertex.VertexConfig.from_file(str(ROOT / "vertex.example.json"))
    assert vcfg.pipeline_config().vertex_endpoint is not None


@pytest.mark.parametrize("schedule", ["0 3 * * 1", "TZ=America/New_York 0 3 * * 1", "CRON_TZ=Europe/Paris 30 2 * * *"])
def test_schedules_with_a_time_zone_are_accepted(schedule):
    assert vertex.VertexConfig.from_mapping({**SETTINGS, "schedule_cron": schedule}).schedule_cron == schedule


def test_submit_without_credentials_is_one_line_before_anything_is_compiled(tmp_path, capsys, monkeypatch):
    """No credentials: google.auth finds none (its own lookup, here with nothing to find)."""
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # no metadata server either
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    config = tmp_path / "vertex.json"
    config.write_text(json.dumps(SETTINGS))
    out = tmp_path / "spec.json"
    assert runner.main(["vertex", "submit", "--config", str(config), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no Google Cloud credentials") and len(err.splitlines()) == 1
    assert not out.exists()


def test_missing_setting_fails_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "spec.json"
    code = runner.main(
        [
            "vertex",
            "compile",
            "--region",
            "us-central1",
            "--pipeline-root",
            "gs://b/r",
            "--image",
            "gcr.io/p/i",
            "--data-root",
            "gs://b/d",
            "--output",
            str(out),
        ]
    )
    assert code == 2
    assert capsys.readouterr().err.strip() == "error: vertex.project: is required"
    assert not out.exists()


def test_bigquery_input_uses_bigquery_example_gen(tmp_path):
    settings = {**SETTINGS, "data_root": None, "bigquery_query": "SELECT * FROM `p.d.taxi`", "endpoint_name": None}
    path = vertex.compile_pipeline(vertex.VertexConfig(**settings), str(tmp_path / "p.json"))
    spec = json_format.ParseDict(json.load(open(path))["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    args = list(executor(spec, P.EXAMPLE_GEN)["container"]["args"])
    assert "big_query" in args[args.index("--executor_class_path") + 1]
    # Without an endpoint the Pusher copies the model to GCS.
    pusher_args = list(executor(spec, P.PUSHER)["container"]["args"])
    assert pusher_args[pusher_args.index("--executor_class_path") + 1] == "pipeline.pusher.Executor"
    assert "gs://my-bucket/tfx/serving" in open(path).read()
