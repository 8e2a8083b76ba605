"""The pipeline definition: wiring only, one definition for every runner."""

from __future__ import annotations

import json

# TFX's public API is `from tfx import v1 as tfx`, but tfx.v1 imports every extension (the AI
# Platform one pulls in google-cloud-aiplatform): 2.4 s in every process. So this module imports
# what it uses from where TFX defines it, and the Google Cloud extensions only when configured.
from tfx.components import (
    CsvExampleGen,
    ExampleValidator,
    Pusher,
    SchemaGen,
    StatisticsGen,
    Trainer,
    Transform,
    Tuner,
)
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import data_types
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import example_gen_pb2, pusher_pb2, trainer_pb2, tuner_pb2

from modules import code
from modules import features as F
from pipeline import gate as data_gate
from pipeline import ingest, lineage, resolution
from pipeline import pusher as idempotent_pusher
from pipeline.configs import PipelineConfig
from pipeline.eval_config import build_eval_config
from pipeline.metadata_backends import scope

# The runtime parameter of a compiled (Vertex AI) pipeline that carries the accepted anomalies.
ACCEPT_PARAMETER = "accept_anomalies"

# User code that Transform, the Tuner and the Trainer load by module path (installed with this
# package, or baked into the container image on Vertex); its digests: modules/code.py.
PREPROCESSING_FN = "modules.preprocessing.preprocessing_fn"
# tf.Transform traces preprocessing_fn into a TF1 graph (its compat-v1 mode) rather than TF2
# functions: a third less Transform time on the bundled data (bench/transform_bench.py, both
# modes side by side), the same vocabularies and ids, and floats equal to float32's precision
# of the inputs (z-scores of latitudes within 2e-4). The served model embeds the graph as a
# wrapped function; what it computes is unchanged (tests/test_signatures.py).
TRANSFORM_TF1_GRAPH = True
RUN_FN = "modules.trainer.run_fn"

# Stable component ids: metadata queries, tests and the Vertex spec refer to them.
EXAMPLE_GEN = "example_gen"
STATISTICS_GEN = "statistics_gen"
SCHEMA_GEN = "schema_gen"
SCHEMA_IMPORTER = "schema_importer"
EXAMPLE_VALIDATOR = "example_validator"
DATA_GATE = "data_gate"
TRANSFORM = "transform"
TRAINER = "trainer"
TUNER = lineage.TUNER
TUNER_FN = "modules.tuning.tuner_fn"
EVALUATOR = "evaluator"
PUSHER = "pusher"


def create_pipeline(
    cfg: PipelineConfig,
    metadata_connection_config=None,
) -> tfx_pipeline.Pipeline:
    """Builds the TFX pipeline from `cfg`: one topology for every runner. Reads no environment
    and no globals.

    The runner chooses backends only: the Trainer, Tuner and Pusher classes (local or Vertex
    AI), the Beam args and the metadata store. Inputs that come from earlier runs (the drift
    reference, the training window, the warm-start model, the newest tuning, the evaluation
    baseline) are resolved by the components themselves, in `cfg.metadata_uri`'s store and
    scoped to `cfg.pipeline_name` (pipeline/resolution.py), the same way on both runners.

    Args:
      cfg: the pipeline configuration.
      metadata_connection_config: ML Metadata connection for local runs; None lets the
        orchestrator provide one (Vertex).
    """
    transform_code = code.fingerprint(code.TRANSFORM_CODE)
    trainer_code = code.fingerprint(code.TRAINER_CODE)
    lineage_scope = scope(cfg.metadata_uri or "", cfg.pipeline_name)
    output_config = example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[example_gen_pb2.SplitConfig.Split(name=n, hash_buckets=b) for n, b in cfg.split_buckets],
            # Hash this column, not the whole row: see F.SPLIT_KEY.
            partition_feature_name=F.SPLIT_KEY,
        )
    )
    if cfg.bigquery_query:
        from tfx.extensions.google_cloud_big_query.example_gen.component import BigQueryExampleGen

        example_gen = BigQueryExampleGen(query=cfg.bigquery_query, output_config=output_config)
    else:
        input_config = None
        if cfg.span_pattern:
            # The newest span under data_root; its number is recorded on the Examples artifact.
            input_config = example_gen_pb2.Input(
                splits=[example_gen_pb2.Input.Split(name="single_split", pattern=cfg.span_pattern)]
            )
        example_gen = CsvExampleGen(input_base=cfg.data_root, input_config=input_config, output_config=output_config)
        # Files CsvExampleGen would crash on (another delimiter, ragged rows, not UTF-8) are
        # refused with the gate's table instead (pipeline/ingest.py).
        example_gen.executor_spec = executor_spec.BeamExecutorSpec(ingest.Executor)
    example_gen = example_gen.with_id(EXAMPLE_GEN)

    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"]).with_id(STATISTICS_GEN)
    # Inferred for reference (diff it against the curated one when the data changes); the
    # curated schema is what validation and Transform use.
    schema_gen = SchemaGen(statistics=statistics_gen.outputs["statistics"], infer_feature_shape=False).with_id(SCHEMA_GEN)
    schema_importer = ImportSchemaGen(schema_file=cfg.schema_path).with_id(SCHEMA_IMPORTER)
    schema = schema_importer.outputs["schema"]

    example_validator = ExampleValidator(statistics=statistics_gen.outputs["statistics"], schema=schema).with_id(
        EXAMPLE_VALIDATOR
    )

    # The gate stops the run here when the data has anomalies nobody accepted, drift against
    # the newest earlier span of this pipeline that passed included; Transform and everything
    # after it run only if it passes.
    accept = cfg.accept_anomalies
    if cfg.accept_at_run_time:
        accept = data_types.RuntimeParameter(name=ACCEPT_PARAMETER, ptype=str, default=json.dumps(sorted(accept)))
    gate = data_gate.DataGate(
        examples=example_gen.outputs["examples"],
        statistics=statistics_gen.outputs["statistics"],
        schema=schema,
        anomalies=example_validator.outputs["anomalies"],
        accept=accept,
        limits=cfg.gate_limits,
        input_pattern=cfg.input_pattern,
        lineage_scope=lineage_scope,
    ).with_id(DATA_GATE)

    # Training data: this run's span and the newest earlier spans that passed the gate (the
    # rolling window), resolved by Transform itself after this run's gate. Transform writes the
    # transform graph only: the Trainer and the Tuner read the window's raw examples and apply
    # the graph as they load them, as the served model applies it to a request. Materialising
    # the transformed window cost more than analysing it (bench/RESULTS.md).
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema,
        preprocessing_fn=PREPROCESSING_FN,
        custom_config={
            "module_fingerprint": transform_code,
            resolution.LINEAGE_KEY: lineage_scope,
            resolution.WINDOW_KEY: cfg.train_window_spans,
            resolution.ANALYZER_CACHE_KEY: cfg.analyzer_cache,
        },
        # StatisticsGen already describes the raw data; skipping Transform's own pre- and
        # post-transform statistics saves a full pass over the data.
        disable_statistics=True,
        force_tf_compat_v1=TRANSFORM_TF1_GRAPH,
        materialize=False,
    ).with_id(TRANSFORM)
    transform.executor_spec = executor_spec.BeamExecutorSpec(resolution.TransformExecutor)
    transform.add_upstream_node(gate)

    trainer_config = {"hparams": cfg.hparams.to_dict(), "module_fingerprint": trainer_code, resolution.LINEAGE_KEY: lineage_scope}
    trainer_class, trainer_executor = Trainer, resolution.TrainerExecutor
    if cfg.vertex_training:
        from tfx.extensions.google_cloud_ai_platform.trainer.component import Trainer as VertexTrainer

        from pipeline import vertex_trainer

        trainer_class, trainer_executor = VertexTrainer, vertex_trainer.Executor
        trainer_config.update(cfg.vertex_training.custom_config())
    # What the Tuner's trials and the Trainer train on, for as long: this run's span, which
    # their executors widen to the window Transform recorded on the graph.
    training_inputs = dict(
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema,
        train_args=trainer_pb2.TrainArgs(num_steps=cfg.train_steps),
        eval_args=trainer_pb2.EvalArgs(num_steps=cfg.eval_steps),
    )
    # Hyperparameters: a tuning in this run, else the newest tuning of this pipeline (the
    # Trainer resolves it, so tuning can run weekly and training daily), else cfg.hparams.
    tuned = {}
    nodes = []
    if cfg.tune_trials:
        tuner_class, tuner_config = (
            Tuner,
            {
                "hparams": cfg.hparams.to_dict(),
                "max_trials": cfg.tune_trials,
                "module_fingerprint": code.fingerprint(code.TUNER_CODE),
                resolution.LINEAGE_KEY: lineage_scope,
            },
        )
        tuner_executor = resolution.TunerExecutor
        tune_args = None
        if cfg.vertex_training:
            # TFX's Vertex Tuner: the trials run as one Vertex AI Training job of
            # tune_parallel_trials replicas, and Vertex AI Vizier chooses them.
            from tfx.extensions.google_cloud_ai_platform.tuner.component import Tuner as VertexTuner

            from pipeline import vertex_trainer

            tuner_class, tuner_executor = VertexTuner, vertex_trainer.TunerExecutor
            tuner_config.update(cfg.vertex_training.tuning_config(cfg.tune_parallel_trials, cfg.pipeline_name))
            tune_args = tuner_pb2.TuneArgs(num_parallel_trials=cfg.tune_parallel_trials)
        tuner = tuner_class(tuner_fn=TUNER_FN, tune_args=tune_args, **training_inputs, custom_config=tuner_config).with_id(TUNER)
        tuner.executor_spec = executor_spec.ExecutorClassSpec(tuner_executor)
        tuned = {"hyperparameters": tuner.outputs["best_hyperparameters"]}
        nodes.append(tuner)
    trainer = trainer_class(run_fn=RUN_FN, **tuned, **training_inputs, custom_config=trainer_config).with_id(TRAINER)
    trainer.executor_spec = executor_spec.ExecutorClassSpec(trainer_executor)

    # The baseline (the newest blessed model of this pipeline other than the candidate) is
    # resolved by the Evaluator itself.
    evaluator = resolution.Evaluator(
        lineage_scope=lineage_scope,
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        eval_config=build_eval_config(cfg.thresholds),
    ).with_id(EVALUATOR)

    if cfg.vertex_endpoint:
        from tfx.extensions.google_cloud_ai_platform.pusher.component import Pusher as VertexPusher

        from pipeline import vertex_pusher

        pusher = VertexPusher(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            custom_config=cfg.vertex_endpoint.custom_config(),
        )
        # Undeploys what no longer receives traffic after a push (pipeline/vertex_pusher.py).
        pusher.executor_spec = executor_spec.ExecutorClassSpec(vertex_pusher.Executor)
    else:
        pusher = Pusher(
            model=trainer.outputs["model"],
            model_blessing=evaluator.outputs["blessing"],
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=cfg.serving_model_dir)
            ),
            # Does not push a model identical to the newest pushed version again.
            custom_executor_spec=executor_spec.ExecutorClassSpec(idempotent_pusher.Executor),
        )
    pusher = pusher.with_id(PUSHER)

    return tfx_pipeline.Pipeline(
        pipeline_name=cfg.pipeline_name,
        pipeline_root=cfg.pipeline_root,
        components=[
            example_gen,
            statistics_gen,
            schema_gen,
            schema_importer,
            example_validator,
            gate,
            transform,
            *nodes,
            trainer,
            evaluator,
            pusher,
        ],
        enable_cache=cfg.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(cfg.beam_pipeline_args),
    )
