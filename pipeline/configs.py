"""Typed pipeline configuration: frozen dataclasses, validated when built.

`create_pipeline` takes a `PipelineConfig` and nothing else; local and Vertex runs differ only in
the values here. A bad value fails when the config is built, with a message naming the field.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from modules.hparams import HParams
from pipeline.errors import ConfigError

# The MLMD context runs share (cache, baselines, `runs`), unless a run names another.
PIPELINE_NAME = "taxi-big-tipper"

SPAN_DIR = re.compile(r"^span-(\d+)$")
SPAN_PATTERN = "span-{SPAN}/*.csv"


def find_spans(data_root: str) -> list[int]:
    """Span numbers of the span-<N>/ folders under data_root (sorted)."""
    return sorted(int(m.group(1)) for m in map(SPAN_DIR.match, os.listdir(data_root)) if m)


# Beam on the DirectRunner. Dataflow args replace these for production (pipeline/vertex.py).
# in_memory (one worker, in this process) is the fastest mode for small data: it starts no
# worker processes and pickles nothing between them. multi_processing (a worker per core) wins
# on large data. Measured (bench/RESULTS.md, 2 cores), in_memory vs multi_processing, pipeline
# seconds: 60 vs 77 at 15k rows (1.9 MB of CSV), 111 vs 111 at 150k rows (19 MB), 710 vs
# 455 at 1.5M rows (192 MB). Straight lines through the last two cross at 19 MB of CSV in
# that run and at 23 and 40 MB in two earlier ones: "auto" switches near the median, at 24 MiB.
# --setup_file names this project as the Beam stages' Python dependency. The DirectRunner
# runs in this environment, where it is installed, and stages nothing; without a dependency
# flag TFX copies its own installation and builds an sdist of it before every Beam component
# (tfx/utils/dependency_utils.py), ~1 s each, for workers that already have it.
# cloudpickle (Beam's default from 2.65): Beam's dill pickler resets dill's logger level on
# every pickle, and each reset walks all of Python's loggers (~14k resets a run, ~1 s).
SETUP_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "setup.py")
BEAM_MODES = {
    "in_memory": (
        "--direct_running_mode=in_memory",
        "--direct_num_workers=1",
        f"--setup_file={SETUP_FILE}",
        "--pickle_library=cloudpickle",
    ),
    "multi_processing": (
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=0",
        f"--setup_file={SETUP_FILE}",
        "--pickle_library=cloudpickle",
    ),
}
LOCAL_BEAM_ARGS = BEAM_MODES["in_memory"]
MULTI_PROCESSING_FROM_BYTES = 24 * 2**20


def beam_args_for(mode: str, input_bytes: int) -> tuple[str, ...]:
    """DirectRunner args for `mode` (in_memory, multi_processing, or auto: by input size)."""
    if mode == "auto":
        mode = "multi_processing" if input_bytes >= MULTI_PROCESSING_FROM_BYTES else "in_memory"
    _require(mode in BEAM_MODES, "beam_mode", f"must be auto or one of {sorted(BEAM_MODES)}, got {mode!r}")
    return BEAM_MODES[mode]


def _require(ok: bool, field: str, problem: str) -> None:
    if not ok:
        raise ConfigError(f"{field}: {problem}")


@dataclasses.dataclass(frozen=True)
class EvalThresholds:
    """What the Evaluator requires before it blesses a candidate model."""

    min_auc: float = 0.9
    min_accuracy: float = 0.85
    # How much worse than the latest blessed model a candidate may be (absolute). 0 means
    # "at least as good as the baseline".
    max_auc_regression: float = 0.0
    max_accuracy_regression: float = 0.0
    # On each of the dataset's gated slices (features.GATED_SLICES): the AUC a candidate needs,
    # and how much worse than the baseline's on that slice it may be. Calibrated across seeds
    # (bench/SLICES.md): a retrain of the same model on the same data passes.
    slice_min_auc: float = 0.6
    slice_max_auc_regression: float = 0.03

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            _require(
                isinstance(value, (int, float)) and 0 <= value <= 1, f"thresholds.{f.name}", f"must be in [0, 1], got {value!r}"
            )


@dataclasses.dataclass(frozen=True)
class VertexTraining:
    """Run the Trainer as a Vertex AI custom training job."""

    project: str
    region: str
    image: str
    machine_type: str = "n1-standard-8"
    accelerator_type: str | None = None
    accelerator_count: int = 0
    service_account: str | None = None

    def _job_spec(self, replicas: int = 1) -> dict[str, Any]:
        """A CustomJob spec: the primary replica, and with `replicas` > 1 a second worker pool
        of the same machines for the rest."""
        machine_spec: dict[str, Any] = {"machine_type": self.machine_type}
        if self.accelerator_type:
            machine_spec.update(accelerator_type=self.accelerator_type, accelerator_count=self.accelerator_count)
        pools = [
            {"machine_spec": dict(machine_spec), "replica_count": count, "container_spec": {"image_uri": self.image}}
            for count in ([1, replicas - 1] if replicas > 1 else [1])
        ]
        job_spec: dict[str, Any] = {"worker_pool_specs": pools}
        if self.service_account:
            job_spec["service_account"] = self.service_account
        return job_spec

    def custom_config(self) -> dict[str, Any]:
        """The Trainer custom_config keys that TFX's Vertex training client reads."""
        from tfx.extensions.google_cloud_ai_platform import constants
        from tfx.extensions.google_cloud_ai_platform.trainer import executor

        return {
            constants.ENABLE_VERTEX_KEY: True,
            constants.VERTEX_REGION_KEY: self.region,
            executor.TRAINING_ARGS_KEY: {"project": self.project, "job_spec": self._job_spec()},
        }

    def tuning_config(self, parallel_trials: int, study_prefix: str) -> dict[str, Any]:
        """The Tuner custom_config keys that TFX's Vertex Tuner reads (its trials: one CustomJob
        of `parallel_trials` replicas on the training machines), and the Vizier study that
        chooses the trials (modules/tuning.py)."""
        from tfx.extensions.google_cloud_ai_platform import constants
        from tfx.extensions.google_cloud_ai_platform.tuner import executor

        return {
            constants.ENABLE_VERTEX_KEY: True,
            constants.VERTEX_REGION_KEY: self.region,
            executor.TUNING_ARGS_KEY: {"project": self.project, "job_spec": self._job_spec(parallel_trials)},
            "vizier": {"project": self.project, "region": self.region, "study_prefix": study_prefix},
        }


@dataclasses.dataclass(frozen=True)
class VertexEndpoint:
    """Push a blessed model to a Vertex AI endpoint (upload + deploy)."""

    project: str
    region: str
    endpoint_name: str
    serving_image: str
    machine_type: str = "n1-standard-2"
    min_replicas: int = 1
    max_replicas: int = 2
    traffic_percentage: int = 100

    def custom_config(self) -> dict[str, Any]:
        """The Pusher custom_config keys that TFX's Vertex prediction client reads."""
        from tfx.extensions.google_cloud_ai_platform import constants

        return {
            constants.ENABLE_VERTEX_KEY: True,
            constants.VERTEX_REGION_KEY: self.region,
            constants.VERTEX_CONTAINER_IMAGE_URI_KEY: self.serving_image,
            constants.SERVING_ARGS_KEY: {
                "project_id": self.project,
                "endpoint_name": self.endpoint_name,
                "machine_type": self.machine_type,
                "min_replica_count": self.min_replicas,
                "max_replica_count": self.max_replicas,
                "traffic_percentage": self.traffic_percentage,
            },
        }


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything `create_pipeline` needs.

    Attributes:
      pipeline_name: MLMD context name; runs of the same name share cache and baselines.
      pipeline_root: where component outputs are written (local path or gs://).
      data_root: folder holding the input CSV files (unless bigquery_query is set).
      bigquery_query: read the input with BigQueryExampleGen instead of CSV files.
      schema_path: the curated schema (.pbtxt) that ImportSchemaGen imports.
      serving_model_dir: Pusher's destination; each push is a new numbered version inside.
      metadata_uri: the metadata store (pipeline/stores.py): a SQLite file path, or
        mysql://user[:password]@host[:port]/database for a shared store (MySQL/MariaDB; not
        PostgreSQL with ml-metadata 1.16, see README), or vertex://PROJECT/REGION on Vertex
        AI, where the service records the runs. The components resolve their cross-run
        inputs there (the password is never passed to them).
      train_steps / eval_steps: training length and validation length, in batches.
      hparams: model hyperparameters, passed to the Trainer through custom_config.
      split_buckets: (split name, hash buckets) pairs for ExampleGen's repeatable split.
      thresholds: blessing criteria.
      beam_pipeline_args: passed to every Beam-based component.
      enable_cache: reuse the outputs of component executions whose inputs are unchanged.
      vertex_training: run the Trainer on Vertex AI Training (None: in the pipeline's worker).
      vertex_endpoint: push to a Vertex AI endpoint (None: copy to serving_model_dir).
      span_pattern: when the input arrives as spans, the pattern of one span's files under
        data_root with TFX's {SPAN} placeholder (e.g. "span-{SPAN}/*.csv"); each run ingests
        the newest span. None: every file in data_root is one dataset (span 0).
      train_window_spans: the rolling window: the Trainer trains on the newest spans that
        passed the gate, this many (it warm-starts from the newest blessed model trained on
        older spans, and the gate checks drift against the previous passed span).
      analyzer_cache: Transform reuses tf.Transform's analyses of the window's earlier spans
        (the analyzer cache of the run before), so a daily run analyses its new span only.
      accept_anomalies: anomalies the operator accepts for this run (FEATURE, FEATURE:KIND or
        *); anything else the data gate finds stops the run before Transform.
      tune_trials: run the Tuner with this many trials before training (its best
        hyperparameters feed the Trainer); 0: train with the newest tuned hyperparameters
        recorded in ML Metadata, else with `hparams`. With vertex_training, the trials run on
        Vertex AI Training and Vertex AI Vizier chooses them.
      tune_parallel_trials: trials run at once (Vertex: the tuning job's replicas).
      accept_at_run_time: compile `accept_anomalies` as the pipeline's runtime parameter
        ACCEPT_PARAMETER (its default), so each Vertex AI run can set it without recompiling.
      gate_limits: the data gate's limits beyond the schema (schemas/limits.json, as JSON):
        numeric decile shifts, the label's rate, examples per class, repeated rows. Empty:
        the schema's checks only.
    """

    pipeline_name: str
    pipeline_root: str
    data_root: str
    schema_path: str
    serving_model_dir: str
    metadata_uri: str | None = None
    train_steps: int = 2000
    eval_steps: int = 50
    hparams: HParams = dataclasses.field(default_factory=HParams)
    split_buckets: tuple[tuple[str, int], ...] = (("train", 2), ("eval", 1))
    thresholds: EvalThresholds = dataclasses.field(default_factory=EvalThresholds)
    beam_pipeline_args: tuple[str, ...] = LOCAL_BEAM_ARGS
    enable_cache: bool = True
    bigquery_query: str | None = None
    vertex_training: VertexTraining | None = None
    vertex_endpoint: VertexEndpoint | None = None
    span_pattern: str | None = None
    train_window_spans: int = 3
    analyzer_cache: bool = True
    accept_anomalies: tuple[str, ...] = ()
    accept_at_run_time: bool = False
    tune_trials: int = 0
    tune_parallel_trials: int = 1
    gate_limits: str = ""

    def __post_init__(self) -> None:
        for name in ("pipeline_name", "pipeline_root", "schema_path", "serving_model_dir", "metadata_uri"):
            _require(bool(getattr(self, name)), name, "is required")
        _require(
            bool(self.data_root) != bool(self.bigquery_query), "data_root", "set exactly one of data_root and bigquery_query"
        )
        _require(
            self.pipeline_name.replace("-", "").replace("_", "").isalnum(),
            "pipeline_name",
            f"use letters, digits, '-' and '_' only, got {self.pipeline_name!r}",
        )
        _require(
            isinstance(self.train_steps, int) and self.train_steps > 0,
            "train_steps",
            f"must be a positive integer, got {self.train_steps!r}",
        )
        _require(
            isinstance(self.eval_steps, int) and self.eval_steps > 0,
            "eval_steps",
            f"must be a positive integer, got {self.eval_steps!r}",
        )
        names = [name for name, _ in self.split_buckets]
        _require(
            set(names) == {"train", "eval"} and len(names) == 2, "split_buckets", f"needs exactly 'train' and 'eval', got {names}"
        )
        _require(
            all(isinstance(n, int) and n > 0 for _, n in self.split_buckets),
            "split_buckets",
            "hash bucket counts must be positive integers",
        )
        _require(
            isinstance(self.train_window_spans, int) and self.train_window_spans > 0,
            "train_window_spans",
            f"must be a positive integer, got {self.train_window_spans!r}",
        )
        _require(
            isinstance(self.tune_trials, int) and not isinstance(self.tune_trials, bool) and self.tune_trials >= 0,
            "tune_trials",
            f"must be a non-negative integer, got {self.tune_trials!r}",
        )
        _require(
            isinstance(self.tune_parallel_trials, int)
            and not isinstance(self.tune_parallel_trials, bool)
            and self.tune_parallel_trials >= 1
            and (self.tune_trials == 0 or self.tune_parallel_trials <= self.tune_trials),
            "tune_parallel_trials",
            f"must be between 1 and tune_trials ({self.tune_trials}), got {self.tune_parallel_trials!r}",
        )
        _require(
            self.tune_trials == 0 or self.tune_parallel_trials == 1 or self.vertex_training is not None,
            "tune_parallel_trials",
            "parallel trials need vertex_training (local trials run one at a time)",
        )
        _require(
            self.span_pattern is None or "{SPAN}" in self.span_pattern,
            "span_pattern",
            f"must contain {{SPAN}}, got {self.span_pattern!r}",
        )
        from pipeline.accepting import parse_accept

        try:
            object.__setattr__(self, "accept_anomalies", parse_accept(self.accept_anomalies))
        except ValueError as e:
            raise ConfigError(f"accept_anomalies: {e}") from e
        if self.gate_limits:
            from pipeline.data_checks import Limits

            try:
                Limits.from_json(self.gate_limits)
            except (ValueError, KeyError, TypeError) as e:
                raise ConfigError(f"gate_limits: not a valid limits config ({type(e).__name__}: {e})") from e

    @property
    def input_pattern(self) -> str:
        """The files ExampleGen reads ({SPAN} for spans); empty for BigQuery input."""
        if self.bigquery_query:
            return ""
        return f"{self.data_root.rstrip('/')}/{self.span_pattern or '*'}"

    def replace(self, **changes: Any) -> PipelineConfig:
        return dataclasses.replace(self, **changes)


def local_config(
    output_dir: str,
    data_root: str,
    schema_path: str,
    pipeline_name: str = PIPELINE_NAME,
    beam_mode: str = "auto",
    **overrides: Any,
) -> PipelineConfig:
    """A config for LocalDagRunner with every output under `output_dir`.

    Layout: <output_dir>/tfx (artifacts), <output_dir>/metadata.sqlite (ML Metadata),
    <output_dir>/serving/<version> (pushed models). `beam_mode` picks the DirectRunner mode
    (see BEAM_MODES; auto: by the size of the CSV files this run ingests) unless
    `beam_pipeline_args` is given.
    """
    _require(os.path.isdir(data_root), "data_root", f"no such directory: {data_root}")
    spans = find_spans(data_root)
    folder = os.path.join(data_root, f"span-{spans[-1]}") if spans else data_root
    csv_files = [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith(".csv")]
    _require(bool(csv_files), "data_root", f"no .csv file in {folder}" + ("" if spans else " (nor span-<N>/ folders)"))
    for path in csv_files:
        # CsvExampleGen's own error for this is about missing column names.
        _require(os.path.getsize(path) > 0, "data_root", f"{path} is empty (0 bytes): not even a header row")
    if spans:
        overrides.setdefault("span_pattern", SPAN_PATTERN)
    if "beam_pipeline_args" not in overrides:
        overrides["beam_pipeline_args"] = beam_args_for(beam_mode, sum(os.path.getsize(p) for p in csv_files))
    _require(os.path.isfile(schema_path), "schema_path", f"no such file: {schema_path}")
    if "gate_limits" not in overrides:
        from pipeline.data_checks import limits_path, read_limits_text

        _require(
            os.path.isfile(limits_path(schema_path)),
            "schema_path",
            f"no limits config beside the schema: {limits_path(schema_path)}",
        )
        try:
            overrides["gate_limits"] = read_limits_text(schema_path)
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"gate_limits: {limits_path(schema_path)}: {type(e).__name__}: {e}") from e
    output_dir = os.path.abspath(output_dir)
    values: dict[str, Any] = dict(
        pipeline_name=pipeline_name,
        pipeline_root=os.path.join(output_dir, "tfx"),
        data_root=os.path.abspath(data_root),
        schema_path=os.path.abspath(schema_path),
        serving_model_dir=os.path.join(output_dir, "serving"),
        metadata_uri=os.path.join(output_dir, "metadata.sqlite"),
    )
    values.update(overrides)
    return PipelineConfig(**values)
