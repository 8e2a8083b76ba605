"""Vertex AI: production settings, compilation with TFX's KubeflowV2 runner, and job submission.

The pipeline is the same `create_pipeline`; only the `PipelineConfig` differs: a gs:// root,
Dataflow Beam args, BigQuery or GCS input, Vertex AI Training for the Trainer and a Vertex AI
endpoint (or GCS) for the Pusher. User code is referenced by module path and lives in the
pipeline image, so compiling reads no cloud resource and uploads nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from typing import Any

from modules.hparams import HParams
from pipeline.configs import (
    PIPELINE_NAME,
    SPAN_PATTERN,
    ConfigError,
    EvalThresholds,
    PipelineConfig,
    VertexEndpoint,
    VertexTraining,
    _require,
)
from pipeline.data_checks import read_limits_text

# Where the Dockerfile puts the repository inside the pipeline image.
IMAGE_WORKDIR = "/pipeline"
# The curated schema (and limits.json beside it) in the checkout the image is built from.
LOCAL_SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schemas", "schema.pbtxt")

_REGION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")  # us-central1, europe-west4, northamerica-northeast1
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_CRON = re.compile(r"^(\S+\s+){4}\S+$")
# What Vertex AI Pipelines accepts as a pipeline (and PipelineJob display) name.
_PIPELINE_NAME = re.compile(r"^[a-z][a-z0-9-]{0,127}$")


def _check_types(cfg: Any) -> None:
    """Each setting has its declared type (a JSON file says "10" where 10 is meant)."""
    simple: dict[str, type | tuple[type, ...]] = {"str": str, "int": int, "str | None": (str, type(None)), "bool": bool}
    for f in dataclasses.fields(cfg):
        expected = simple.get(str(f.type))
        value = getattr(cfg, f.name)
        if expected is None:
            continue
        wrong = not isinstance(value, expected) or (isinstance(value, bool) and str(f.type) == "int")
        if wrong:
            raise ConfigError(f"vertex.{f.name}: must be {str(f.type).replace(' | None', ' or null')}, got {value!r}")


def _accelerator_types() -> set[str]:
    from google.cloud.aiplatform_v1.types import AcceleratorType

    return {t.name for t in AcceleratorType if t.name != "ACCELERATOR_TYPE_UNSPECIFIED"}


def _check_cron(schedule: str) -> None:
    """A 5-field cron, optionally after TZ=<zone> or CRON_TZ=<zone> (an IANA time zone)."""
    expression = schedule
    match = re.match(r"^(CRON_TZ|TZ)=(\S+)\s+(.*)$", schedule)
    if match:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(match.group(2))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"vertex.schedule_cron: unknown time zone {match.group(2)!r} in {schedule!r}") from None
        expression = match.group(3)
    _require(bool(_CRON.match(expression)), "vertex.schedule_cron", f"not a 5-field cron expression: {schedule!r}")


@dataclasses.dataclass(frozen=True)
class VertexConfig:
    """Production settings. Build with `from_mapping` (a JSON file and/or flags)."""

    project: str
    region: str
    pipeline_root: str
    image: str
    pipeline_name: str = PIPELINE_NAME
    service_account: str | None = None
    # Input: exactly one of a BigQuery query (BigQueryExampleGen) or a gs:// folder of CSVs.
    bigquery_query: str | None = None
    data_root: str | None = None
    schema_path: str = f"{IMAGE_WORKDIR}/schemas/schema.pbtxt"  # inside the image
    # The layout of data_root: each run ingests the newest span-N/ folder (TFX's {SPAN}); null
    # for a flat folder of CSV files read whole every run.
    span_pattern: str | None = SPAN_PATTERN
    # Beam on Dataflow for ExampleGen, StatisticsGen, Transform and Evaluator.
    dataflow_region: str | None = None  # default: region
    dataflow_temp_location: str | None = None  # default: <pipeline_root>/tmp
    dataflow_machine_type: str = "n1-standard-4"
    dataflow_max_workers: int = 10
    # The pipeline image is ~12 GB; Dataflow's default worker disk cannot hold it (TFX's own
    # examples use 50 GB).
    dataflow_disk_size_gb: int = 50
    # Trainer on Vertex AI Training.
    training_machine_type: str = "n1-standard-8"
    training_accelerator_type: str | None = None  # e.g. NVIDIA_TESLA_T4
    training_accelerator_count: int = 0
    # Pusher: a Vertex AI endpoint when endpoint_name is set, else the GCS serving_model_dir.
    endpoint_name: str | None = None
    # This project's server as a Vertex custom container (the Dockerfile's `serving` target):
    # the endpoint speaks the same contract as `runner.py serve` (serving/vertex.py).
    serving_image: str | None = None
    serving_machine_type: str = "n1-standard-2"
    serving_min_replicas: int = 1
    serving_max_replicas: int = 2
    traffic_percentage: int = 100
    serving_model_dir: str | None = None  # default: <pipeline_root>/serving
    # Training length and hyperparameters, as for local runs.
    train_steps: int = 2000
    # Hyperparameter tuning before training (0: none; the Trainer then uses the newest tuning in
    # Vertex ML Metadata, else `hparams`). Vertex AI Vizier chooses the trials; they run
    # `tune_parallel_trials` at a time as replicas of one Vertex AI Training job on the training
    # machines. A weekly tuning beside daily training: two specs, two schedules (docs/vertex.md).
    tune_trials: int = 0
    tune_parallel_trials: int = 2
    hparams: HParams = dataclasses.field(default_factory=HParams)
    # What the Evaluator requires to bless a model (pipeline.configs.EvalThresholds).
    thresholds: EvalThresholds = dataclasses.field(default_factory=EvalThresholds)
    # The rolling window, in spans, as for local runs.
    train_window_spans: int = 3
    enable_cache: bool = True
    # Optional recurring run (cron, in the region's time zone unless TZ= is given).
    schedule_cron: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.thresholds, EvalThresholds):
            if not isinstance(self.thresholds, Mapping):
                raise ConfigError(f"vertex.thresholds: must be an object, got {self.thresholds!r}")
            try:
                object.__setattr__(self, "thresholds", EvalThresholds(**self.thresholds))
            except TypeError as e:
                raise ConfigError(f"vertex.thresholds: {e}") from e
        _check_types(self)
        _require(
            bool(_PIPELINE_NAME.match(self.pipeline_name)),
            "vertex.pipeline_name",
            f"Vertex AI needs lowercase letters, digits and '-' (starting with a letter), got {self.pipeline_name!r}",
        )
        _require(bool(self.project), "vertex.project", "is required")
        _require(bool(_PROJECT.match(self.project)), "vertex.project", f"not a GCP project id: {self.project!r}")
        _require(bool(self.region), "vertex.region", "is required")
        _require(bool(_REGION.match(self.region)), "vertex.region", f"not a region like 'us-central1': {self.region!r}")
        if self.dataflow_region:
            _require(
                bool(_REGION.match(self.dataflow_region)), "vertex.dataflow_region", f"not a region: {self.dataflow_region!r}"
            )
        _require(bool(self.pipeline_root), "vertex.pipeline_root", "is required")
        for name in ("pipeline_root", "data_root", "dataflow_temp_location", "serving_model_dir"):
            value = getattr(self, name)
            if value is not None:
                _require(value.startswith("gs://") and len(value) > 5, f"vertex.{name}", f"must be a gs:// path, got {value!r}")
        _require(bool(self.image), "vertex.image", "is required (the pipeline container image, see Dockerfile)")
        _require("/" in self.image and " " not in self.image, "vertex.image", f"not an image reference: {self.image!r}")
        _require(
            (self.bigquery_query is None) != (self.data_root is None),
            "vertex.bigquery_query/data_root",
            "set exactly one input: a BigQuery query or a gs:// folder of CSV files",
        )
        if self.service_account is not None:
            _require(
                self.service_account.endswith(".iam.gserviceaccount.com") and "@" in self.service_account,
                "vertex.service_account",
                f"not a service account email: {self.service_account!r}",
            )
        _require(self.dataflow_max_workers > 0, "vertex.dataflow_max_workers", "must be positive")
        _require(self.tune_trials >= 0, "vertex.tune_trials", f"must be 0 (no tuning) or more, got {self.tune_trials}")
        _require(
            self.tune_parallel_trials >= 1, "vertex.tune_parallel_trials", f"must be at least 1, got {self.tune_parallel_trials}"
        )
        _require(self.dataflow_disk_size_gb >= 30, "vertex.dataflow_disk_size_gb", "must be at least 30 (the image is ~12 GB)")
        _require(
            (self.training_accelerator_type is None) == (self.training_accelerator_count == 0),
            "vertex.training_accelerator_count",
            "set training_accelerator_type and a positive training_accelerator_count together",
        )
        _require(0 <= self.traffic_percentage <= 100, "vertex.traffic_percentage", "must be in [0, 100]")
        _require(
            self.endpoint_name is None or bool(self.endpoint_name.strip()),
            "vertex.endpoint_name",
            "is empty: leave it out to push to GCS, or name the endpoint",
        )
        if self.training_accelerator_type is not None:
            known = _accelerator_types()
            _require(
                self.training_accelerator_type in known,
                "vertex.training_accelerator_type",
                f"unknown accelerator {self.training_accelerator_type!r} (e.g. {', '.join(sorted(known)[:4])}, ...)",
            )
        if self.endpoint_name:
            _require(
                bool(self.serving_image) and "/" in str(self.serving_image),
                "vertex.serving_image",
                "is required with endpoint_name: the image built from the Dockerfile's `serving` target",
            )
        _require(
            0 < self.serving_min_replicas <= self.serving_max_replicas,
            "vertex.serving_max_replicas",
            "need 0 < serving_min_replicas <= serving_max_replicas",
        )
        if self.schedule_cron is not None:
            _check_cron(self.schedule_cron)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> VertexConfig:
        """From a JSON-like mapping; unknown keys and wrong types are errors naming the key."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"vertex: unknown settings: {', '.join(unknown)}")
        missing = [
            n
            for n, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and n not in values
        ]
        if missing:
            raise ConfigError(f"vertex.{missing[0]}: is required")
        values = dict(values)
        if "hparams" in values and not isinstance(values["hparams"], HParams):
            try:
                values["hparams"] = HParams.from_dict({**HParams().to_dict(), **values["hparams"]})
            except (TypeError, ValueError) as e:
                raise ConfigError(f"vertex.hparams: {e}") from e
        return cls(**values)

    @classmethod
    def from_file(cls, path: str, overrides: Mapping[str, Any] | None = None) -> VertexConfig:
        try:
            with open(path) as f:
                values = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"vertex config {path}: {e}") from e
        return cls.from_mapping({**values, **dict(overrides or {})})

    @property
    def metadata_uri(self) -> str:
        """The region's Vertex ML Metadata store, where this pipeline's runs are recorded."""
        return f"vertex://{self.project}/{self.region}"

    def beam_pipeline_args(self) -> tuple[str, ...]:
        args = [
            "--runner=DataflowRunner",
            f"--project={self.project}",
            f"--region={self.dataflow_region or self.region}",
            f"--temp_location={self.dataflow_temp_location or self.pipeline_root.rstrip('/') + '/tmp'}",
            f"--machine_type={self.dataflow_machine_type}",
            f"--max_num_workers={self.dataflow_max_workers}",
            f"--disk_size_gb={self.dataflow_disk_size_gb}",
            # Workers run the pipeline image, so they have this package and the pinned set.
            f"--sdk_container_image={self.image}",
            "--experiments=use_runner_v2",
        ]
        if self.service_account:
            args.append(f"--service_account_email={self.service_account}")
        return tuple(args)

    def pipeline_config(self) -> PipelineConfig:
        """The one PipelineConfig that `create_pipeline` takes, for Vertex."""
        training = VertexTraining(
            project=self.project,
            region=self.region,
            image=self.image,
            machine_type=self.training_machine_type,
            accelerator_type=self.training_accelerator_type,
            accelerator_count=self.training_accelerator_count,
            service_account=self.service_account,
        )
        endpoint = None
        if self.endpoint_name:
            endpoint = VertexEndpoint(
                project=self.project,
                region=self.region,
                endpoint_name=self.endpoint_name,
                serving_image=str(self.serving_image),
                machine_type=self.serving_machine_type,
                min_replicas=self.serving_min_replicas,
                max_replicas=self.serving_max_replicas,
                traffic_percentage=self.traffic_percentage,
            )
        root = self.pipeline_root.rstrip("/")
        return PipelineConfig(
            pipeline_name=self.pipeline_name,
            pipeline_root=root,
            data_root=self.data_root or "",
            span_pattern=self.span_pattern if self.data_root else None,
            bigquery_query=self.bigquery_query,
            schema_path=self.schema_path,
            serving_model_dir=self.serving_model_dir or f"{root}/serving",
            # Vertex ML Metadata: Vertex AI Pipelines records the runs there, and the components
            # resolve their cross-run inputs from it, scoped to pipeline_name.
            metadata_uri=self.metadata_uri,
            train_steps=self.train_steps,
            hparams=self.hparams,
            thresholds=self.thresholds,
            train_window_spans=self.train_window_spans,
            tune_trials=self.tune_trials,
            # More replicas than trials would only wait for nothing.
            tune_parallel_trials=min(self.tune_parallel_trials, max(1, self.tune_trials)),
            beam_pipeline_args=self.beam_pipeline_args(),
            enable_cache=self.enable_cache,
            vertex_training=training,
            vertex_endpoint=endpoint,
            # Accepting anomalies is a decision per run: a runtime parameter of the PipelineJob.
            accept_at_run_time=True,
            # The limits baked into the image beside the schema, read here from the checkout
            # that builds it and compiled into the spec.
            gate_limits=read_limits_text(LOCAL_SCHEMA),
        )


def compile_pipeline(vcfg: VertexConfig, output_path: str) -> str:
    """Writes the Vertex pipeline spec (PipelineJob JSON) to `output_path`; returns the path."""
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    output_dir, filename = os.path.split(os.path.abspath(output_path))
    os.makedirs(output_dir, exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=vcfg.image),
        output_dir=output_dir,
        output_filename=filename,
    )
    from pipeline.pipeline import ACCEPT_PARAMETER

    # Every runtime parameter has its default in the spec (the runtime config), or Vertex AI
    # would require it on every run.
    runner.run(create_pipeline(vcfg.pipeline_config()), parameter_values={ACCEPT_PARAMETER: "[]"}, write_out=True)
    return os.path.join(output_dir, filename)


def build_job(vcfg: VertexConfig, spec_path: str, credentials=None, accept_anomalies: tuple[str, ...] = ()):
    """The aiplatform PipelineJob for a compiled spec. Makes no network call.

    `accept_anomalies`: what the data gate accepts in this run only (FEATURE, FEATURE:KIND or
    *), passed as the spec's runtime parameter: no recompilation, no new image.
    """
    from google.cloud import aiplatform

    from pipeline.accepting import parse_accept
    from pipeline.pipeline import ACCEPT_PARAMETER

    try:
        accept = parse_accept(accept_anomalies)
    except ValueError as e:
        raise ConfigError(str(e)) from None

    if not os.path.isfile(spec_path):
        raise ConfigError(f"spec: no compiled pipeline at {spec_path} (run 'vertex compile' first)")
    return aiplatform.PipelineJob(
        display_name=vcfg.pipeline_name,
        template_path=spec_path,
        pipeline_root=vcfg.pipeline_root,
        project=vcfg.project,
        location=vcfg.region,
        enable_caching=vcfg.enable_cache,
        credentials=credentials,
        parameter_values={ACCEPT_PARAMETER: json.dumps(sorted(accept))} if accept else None,
    )


class _Captured(Exception):
    def __init__(self, request):
        self.request = request


def _schedule_request(vcfg: VertexConfig, job) -> dict[str, Any]:
    """The CreateScheduleRequest that `submit` sends for a schedule: `submit` itself runs, and
    the request is taken at the ScheduleService transport instead of being sent."""
    from google.cloud.aiplatform_v1.services.schedule_service.transports.grpc import ScheduleServiceGrpcTransport
    from google.protobuf import json_format

    def capture(request, *args, **kwargs):
        raise _Captured(request)

    original = ScheduleServiceGrpcTransport.create_schedule
    ScheduleServiceGrpcTransport.create_schedule = property(lambda self: capture)
    try:
        submit(vcfg, job)
    except _Captured as sent:
        return json_format.MessageToDict(type(sent.request).pb(sent.request))
    finally:
        ScheduleServiceGrpcTransport.create_schedule = original
    raise RuntimeError("submit sent no CreateSchedule request")


def job_request(vcfg: VertexConfig, job) -> dict[str, Any]:
    """The request that `submit` sends, as a dict (for --dry-run): a CreatePipelineJobRequest,
    or with schedule_cron the CreateScheduleRequest."""
    from google.protobuf import json_format

    if vcfg.schedule_cron:
        return _schedule_request(vcfg, job)
    # `submit` sends `job._gca_resource` (the public property refuses before creation); copy it
    # and apply what submit applies, so the dry run shows the same request and changes nothing.
    pipeline_job = type(job._gca_resource)()
    pipeline_job._pb.CopyFrom(job._gca_resource._pb)
    if vcfg.service_account:
        pipeline_job.service_account = vcfg.service_account
    from google.cloud.aiplatform_v1 import CreatePipelineJobRequest

    request = CreatePipelineJobRequest(
        parent=f"projects/{vcfg.project}/locations/{vcfg.region}", pipeline_job_id=job.job_id, pipeline_job=pipeline_job
    )
    return json_format.MessageToDict(CreatePipelineJobRequest.pb(request))


def submit(vcfg: VertexConfig, job, wait: bool = False):
    """Sends the job (or creates its schedule) to Vertex AI Pipelines."""
    if vcfg.schedule_cron:
        return job.create_schedule(
            cron=vcfg.schedule_cron,
            # A weekly tuning beside the daily training: told apart in the console.
            display_name=f"{vcfg.pipeline_name}-{'tuning-' if vcfg.tune_trials else ''}schedule",
            service_account=vcfg.service_account,
        )
    if wait:
        job.run(service_account=vcfg.service_account, sync=True)
    else:
        job.submit(service_account=vcfg.service_account)
    return job
