#!/usr/bin/env python3
"""Command line for the TFX pipeline: run it locally, compile it for Vertex AI, query metadata.

Examples:
  python runner.py run                                  # bundled data -> outputs/
  python runner.py run --data data/ --output /tmp/out --train-steps 500
  python runner.py run --hparams '{"learning_rate": 0.001}'
  python runner.py runs                                 # run history from outputs/metadata.sqlite
  python runner.py artifacts --type Model --json
  python runner.py lineage 1795322187                   # a pushed model version (or artifact id)
  python runner.py compare                              # serving model vs its predecessor
  python runner.py runs --metadata mysql://mlmd:PASSWORD@db.internal:3306/mlmd
  python runner.py run --data spans/                    # span-<N>/ folders: continuous training
  python runner.py run --accept-anomalies payment_type:ENUM_TYPE_UNEXPECTED_STRING_VALUES
  python runner.py run --tune 8                         # tune (8 trials), then train with the best
  python runner.py validate --data new_batch.csv        # skew against the served model's data
  python runner.py report                               # the latest run as one HTML page
  python runner.py rollback [--to VERSION]              # serve an earlier pushed model again
  python runner.py serve                                # REST predictions from outputs/serving
  python runner.py predict --input data/taxi.csv --output /tmp/scored
  python runner.py vertex compile --config vertex.json  # -> build/pipeline.json, offline
  python runner.py vertex submit --config vertex.json --dry-run
"""

from __future__ import annotations

import os
import sys

# TFX 1.16's Keras code paths (Trainer, TFMA) need Keras 2; TF 2.16's tf.keras is Keras 3.
# This must be set before TensorFlow is imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# 3 hides TensorFlow's C++ start-up lines (the "Unable to register cuDNN factory" noise) on
# every command; --verbose shows them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2" if "--verbose" in sys.argv else "3")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "data")
DEFAULT_SCHEMA = os.path.join(HERE, "schemas", "schema.pbtxt")
# PIPELINE_OUTPUT and PIPELINE_METADATA set the defaults of --output and --metadata for every
# command, so a shell (or a CI job) names its store once.
DEFAULT_OUTPUT = os.environ.get("PIPELINE_OUTPUT") or os.path.join(HERE, "outputs")
DEFAULT_METADATA = os.environ.get("PIPELINE_METADATA") or os.path.join(DEFAULT_OUTPUT, "metadata.sqlite")

# Examples for each subcommand's --help.
EXAMPLES = {
    "run": """examples:
  runner.py run                                         # bundled data -> outputs/
  runner.py run --data spans/                           # span-<N>/ folders: the newest span
  runner.py run --train-steps 500 --hparams '{"learning_rate": 0.001}'
  runner.py run --accept-anomalies payment_type:COMPARATOR_L_INFTY_HIGH
  runner.py run --tune 8                                # tune first; later runs reuse the tuning
  runner.py run --metadata mysql://mlmd:PASSWORD@db.internal:3306/mlmd""",
    "runs": """examples:
  runner.py runs
  runner.py runs --limit 5 --json
  PIPELINE_METADATA=mysql://u:p@db/mlmd runner.py runs""",
    "artifacts": """examples:
  runner.py artifacts --type Model
  runner.py artifacts --component data_gate --json""",
    "lineage": """examples:
  runner.py lineage served                              # the model being served
  runner.py lineage 1795322187                          # a pushed version
  runner.py lineage 42 --downstream                     # an artifact id
  runner.py lineage served --metadata vertex://my-project/us-central1   # production's""",
    "compare": """examples:
  runner.py compare                                     # the served model vs the one before
  runner.py compare 1795322187 1795300000
  runner.py compare --slice overall --slice payment_type   # the overall and payment-type slices""",
    "validate": """examples:
  runner.py validate --data todays_batch.csv
  runner.py validate --data requests.jsonl --json       # what serve --request-log wrote""",
    "report": """examples:
  runner.py report                                      # -> outputs/report.html
  runner.py report RUN_ID --serving-data requests.jsonl --output /tmp/run.html""",
    "rollback": """examples:
  runner.py rollback                                    # the version before the served one
  runner.py rollback --to 1795322187""",
    "serve": """examples:
  runner.py serve
  runner.py serve --port 8080 --request-log requests.jsonl
  runner.py serve --version 1795322187 --no-batching""",
    "predict": """examples:
  runner.py predict --input data/taxi.csv --output /tmp/scored
  runner.py predict --input 'gs://b/day/*.csv' --output gs://b/scored --beam-args --runner=DataflowRunner ...""",
    "compile": """examples:
  runner.py vertex compile --config vertex.json
  runner.py vertex compile --config vertex.json --image REPO/taxi-pipeline:TAG
  runner.py vertex compile --config vertex.json --tune 16 --parallel-trials 4 --output build/tuning.json""",
    "submit": """examples:
  runner.py vertex submit --config vertex.json --dry-run
  runner.py vertex submit --config vertex.json --wait
  runner.py vertex submit --config vertex.json --accept-anomalies payment_type:ENUM_TYPE_UNEXPECTED_STRING_VALUES
  runner.py vertex submit --config vertex.json --schedule-cron 'TZ=Europe/Paris 0 3 * * *'
  runner.py vertex submit --config vertex.json --tune 16 --output build/tuning.json --schedule-cron '0 1 * * SUN'""",
}

logger = logging.getLogger("runner")


# Exit status when the data gate (run) or the skew check (validate) finds problems.
DATA_REJECTED = 3


class UserError(Exception):
    """An error the user can fix; printed as one line, exit code 2."""


def _hparams(text: str | None):
    from modules.hparams import HParams

    if not text:
        return HParams()
    try:
        values = json.load(open(text)) if os.path.isfile(text) else json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--hparams: not a JSON object or file: {e}") from e
    if not isinstance(values, dict):
        raise UserError("--hparams: expected a JSON object")
    try:
        return HParams.from_dict({**HParams().to_dict(), **values})
    except ValueError as e:
        raise UserError(f"--hparams: {e}") from e


def _metadata(args: argparse.Namespace):
    from ops.queries import open_metadata

    return open_metadata(args.metadata, args.pipeline_name)


def _emit(args: argparse.Namespace, data, render) -> int:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else render(data))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from ops import render

    runs = [r.to_dict() for r in _metadata(args).runs()[: args.limit]]
    if not runs:
        raise UserError(f"pipeline {args.pipeline_name!r} has no runs")
    return _emit(args, runs, render.runs_table)


def cmd_artifacts(args: argparse.Namespace) -> int:
    from ops import render

    found = _metadata(args).artifacts(run_id=args.run, component=args.component, type_name=args.type)
    if not found:
        raise UserError("no artifacts match")
    return _emit(args, found, render.artifacts_table)


def cmd_lineage(args: argparse.Namespace) -> int:
    from ops import render

    md = _metadata(args)
    tree = md.lineage(md.resolve(args.ref), downstream=args.downstream)
    return _emit(args, tree, render.lineage_tree)


def cmd_compare(args: argparse.Namespace) -> int:
    from ops import render

    try:
        result = _metadata(args).compare(args.model_a, args.model_b, slices=args.slice)
    except ValueError as e:
        raise UserError(str(e)) from None
    return _emit(args, result, render.comparison)


def cmd_serve(args: argparse.Namespace) -> int:
    from serving import model_store
    from serving.server import ServerConfig, serve

    if not model_store.list_versions(args.model_dir):
        raise UserError(f"no pushed model under {args.model_dir} (run the pipeline first)")
    if args.version is not None and args.version not in model_store.list_versions(args.model_dir):
        raise UserError(f"--version {args.version}: no such version under {args.model_dir}")
    from serving.logs import JsonFormatter

    # One JSON object per line on stderr (timestamp, severity, request id, model version,
    # latency, status): what Cloud Logging and log shippers read as they are.
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())
    logging.getLogger("serving").setLevel(logging.INFO)
    cfg = ServerConfig(
        model_dir=args.model_dir,
        model_name=args.model_name,
        host=args.host,
        port=args.port,
        pinned_version=args.version,
        batching=not args.no_batching,
        max_batch_size=args.max_batch_size,
        batch_timeout_ms=args.batch_timeout_ms,
        max_instances=args.max_instances,
        poll_seconds=args.poll_seconds,
        request_log=args.request_log,
    )
    print(f"serving {args.model_dir} at http://{args.host}:{args.port}/v1/models/{args.model_name}:predict", flush=True)
    serve(cfg)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from serving import batch, model_store

    model_dir = args.model
    if model_dir is None:
        versions = model_store.list_versions(args.model_dir)
        if not versions:
            raise UserError(f"no pushed model under {args.model_dir} (run the pipeline first)")
        model_dir = os.path.join(args.model_dir, str(versions[-1]))
    start = time.time()
    try:
        out = batch.predict(
            model_dir,
            args.input,
            args.output,
            key_columns=args.key_columns,
            input_format=args.format,
            beam_args=args.beam_args or None,
            progress=sys.stderr,
        )
    except batch.InputError as e:
        raise UserError(str(e)) from e
    out.update(model=model_dir, seconds=round(time.time() - start, 1))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    # Rows in = rows scored + dead letters, per file and in all.
    for path, counts in out["files"].items():
        print(f"{path}: {counts['rows']} rows: scored {counts['scored']}, dead letters {counts['dead_letters']}")
    print(f"scored {out['scored']}, dead letters {out['dead']} -> {args.output} ({out['seconds']} s, model {model_dir})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    began = time.monotonic()
    from runners import local

    cfg = local.build_config(
        output_dir=args.output,
        data_root=args.data,
        schema_path=args.schema,
        train_steps=args.train_steps,
        hparams=_hparams(args.hparams),
        enable_cache=not args.no_cache,
        accept_anomalies=tuple(args.accept_anomalies or ()),
        beam_mode=args.beam_mode,
        **({"metadata_uri": args.metadata} if args.metadata else {}),
        **({"train_window_spans": args.window} if args.window else {}),
        **({"tune_trials": args.tune} if args.tune else {}),
    )
    # The first progress line once the configuration is valid (a usage error stays one line).
    local.check_store(cfg)
    print(f"progress [{time.monotonic() - began:6.1f}s] {cfg.data_root} -> {args.output}", file=sys.stderr, flush=True)
    start = time.time()
    # Stdout carries the result only. What the libraries print there (Keras's epoch lines,
    # KerasTuner's tables and terminal control codes) goes to stderr with --verbose, else
    # nowhere: the progress lines say what is happening.
    with contextlib.redirect_stdout(sys.stderr if args.verbose else io.StringIO()):
        summary = local.run(cfg, progress=began)
    summary["wall_seconds"] = round(time.time() - start, 1)
    print(local.format_summary(summary) if not args.json else json.dumps(summary, indent=2))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from ops import monitoring

    try:
        report = monitoring.check_skew(_metadata(args), args.data, args.schema, args.model)
    except monitoring.MonitoringError as e:
        raise UserError(str(e)) from e
    _emit(args, report, monitoring.format_report)
    return 0 if report["ok"] else DATA_REJECTED


def cmd_report(args: argparse.Namespace) -> int:
    from ops import report

    print(report.write(_metadata(args), args.run, args.schema, args.output, args.serving_data))
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from ops import rollback
    from ops.queries import open_metadata
    from pipeline.stores import is_vertex

    md = open_metadata(args.metadata, args.pipeline_name, read_only=False)
    try:
        rollback.plan(md, args.to)  # refuses at once, before the heavy imports below
        if is_vertex(args.metadata):
            done = rollback.rollback_endpoint(md, args.to)
        else:
            from runners import local

            with local.exclusive_store(args.metadata):
                done = rollback.rollback_folder(md, args.model_dir, args.to)
    except rollback.RollbackError as e:
        raise UserError(str(e)) from e
    return _emit(
        args,
        done,
        lambda d: (
            f"rolled back: version {d['rolled_back_to']} is served again"
            + (f" as version {d['new_version']}" if d["new_version"] != d["rolled_back_to"] else "")
            + f" (was {d['served_before']}); recorded as run {d['run_id']}"
        ),
    )


# Flags that override settings of the Vertex config file (flag -> VertexConfig field).
VERTEX_FLAGS = {
    "project": "GCP project id",
    "region": "Vertex AI region, e.g. us-central1",
    "pipeline_root": "gs:// root for pipeline artifacts",
    "image": "pipeline container image (see Dockerfile)",
    "service_account": "service account email the job runs as",
    "data_root": "gs:// folder of CSV files (input)",
    "bigquery_query": "BigQuery query (input, instead of --data-root)",
    "endpoint_name": "Vertex AI endpoint to deploy blessed models to (default: push to GCS)",
    "schedule_cron": "create a recurring schedule with this cron expression instead of one run",
}


def _vertex_config(args: argparse.Namespace):
    from runners.vertex import VertexConfig

    overrides = {k: getattr(args, k) for k in VERTEX_FLAGS if getattr(args, k) is not None}
    for flag, setting in (("train_steps", "train_steps"), ("tune", "tune_trials"), ("parallel_trials", "tune_parallel_trials")):
        if getattr(args, flag) is not None:
            overrides[setting] = getattr(args, flag)
    if args.config:
        return VertexConfig.from_file(args.config, overrides)
    return VertexConfig.from_mapping(overrides)


def cmd_vertex_compile(args: argparse.Namespace) -> int:
    from runners.vertex import compile_pipeline

    vcfg = _vertex_config(args)
    print(compile_pipeline(vcfg, args.output))
    return 0


def cmd_vertex_submit(args: argparse.Namespace) -> int:
    from runners import vertex

    vcfg = _vertex_config(args)
    accept = tuple(args.accept_anomalies or ())
    from pipeline.accepting import parse_accept

    try:
        parse_accept(accept)
    except ValueError as e:
        raise UserError(str(e)) from None
    credentials = None
    if not args.dry_run:
        # Before anything is compiled or sent: no credentials is one line, not a traceback.
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError

        try:
            credentials, _ = google.auth.default()
        except DefaultCredentialsError as e:
            raise UserError(
                "no Google Cloud credentials: run `gcloud auth application-default login` or set "
                f"GOOGLE_APPLICATION_CREDENTIALS ({str(e).splitlines()[0]})"
            ) from e
    spec = args.spec or vertex.compile_pipeline(vcfg, args.output)
    if args.dry_run:
        from google.auth.credentials import AnonymousCredentials

        job = vertex.build_job(vcfg, spec, credentials=AnonymousCredentials(), accept_anomalies=accept)
        print(json.dumps(vertex.job_request(vcfg, job), indent=2, sort_keys=True))
        return 0
    job = vertex.submit(vcfg, vertex.build_job(vcfg, spec, credentials=credentials, accept_anomalies=accept), wait=args.wait)
    print(getattr(job, "resource_name", job))
    return 0


class _Subcommands:
    """Adds subcommands that take the common options and show their examples in --help."""

    def __init__(self, action, common: argparse.ArgumentParser):
        self.action, self.common = action, common

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self.action.add_parser(
            name, parents=[self.common], epilog=EXAMPLES.get(name), formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs
        )


def build_parser() -> argparse.ArgumentParser:
    from pipeline.configs import PIPELINE_NAME  # no TensorFlow: keeps --help fast

    parser = argparse.ArgumentParser(prog="runner.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verbose", action="store_true", help="show TFX, TensorFlow and Beam logs")
    # --verbose also after the subcommand (SUPPRESS: it does not reset the one given before).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="show TFX, TensorFlow and Beam logs")
    sub = _Subcommands(parser.add_subparsers(dest="command", required=True), common)

    run = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner, Beam DirectRunner, SQLite MLMD)")
    run.add_argument("--data", default=DEFAULT_DATA, help="folder with the input CSV files (default: %(default)s)")
    run.add_argument("--schema", default=DEFAULT_SCHEMA, help="curated schema .pbtxt (default: %(default)s)")
    run.add_argument("--output", default=DEFAULT_OUTPUT, help="artifacts, metadata.sqlite and serving/ go here")
    run.add_argument("--train-steps", type=int, default=None, help="training steps (default: the config's)")
    run.add_argument("--hparams", help="JSON object or file overriding hyperparameters")
    run.add_argument(
        "--metadata",
        default=os.environ.get("PIPELINE_METADATA"),
        help="ML Metadata store: SQLite path (default: $PIPELINE_METADATA, else <output>/metadata.sqlite) or "
        "mysql://user:password@host:port/db (MySQL/MariaDB)",
    )
    run.add_argument("--no-cache", action="store_true", help="re-execute every component")
    run.add_argument(
        "--accept-anomalies",
        nargs="+",
        metavar="FEATURE[:KIND]",
        help="let the data gate pass these anomalies for this run (recorded in ML Metadata); * accepts all",
    )
    run.add_argument("--window", type=int, help="training window in spans (default: 3)")
    run.add_argument(
        "--tune",
        type=int,
        metavar="TRIALS",
        help="tune the hyperparameters first, with this many trials (later runs without --tune train with the newest tuning)",
    )
    run.add_argument(
        "--beam-mode",
        choices=("auto", "in_memory", "multi_processing"),
        default="auto",
        help="Beam DirectRunner mode; auto: in_memory below 24 MiB of input CSV, multi_processing "
        "above (measured crossover, bench/RESULTS.md) (default: %(default)s)",
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(func=cmd_run)

    def metadata_command(name: str, func, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--metadata",
            default=DEFAULT_METADATA,
            help="SQLite path or mysql://user[:password]@host[:port]/db (default: $PIPELINE_METADATA, else %(default)s)",
        )
        p.add_argument("--pipeline-name", default=PIPELINE_NAME, help="default: %(default)s")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
        return p

    p = metadata_command("runs", cmd_runs, "pipeline runs, newest first: component states, pushed model")
    p.add_argument("--limit", type=int, default=20, help="at most this many runs (default: %(default)s)")
    p = metadata_command("artifacts", cmd_artifacts, "artifacts with URIs and key properties")
    p.add_argument("--run", help="only this run id")
    p.add_argument("--component", help="only this component id (e.g. trainer)")
    p.add_argument("--type", help="only this type (e.g. Model, Examples, PushedModel)")
    p = metadata_command("lineage", cmd_lineage, "the graph upstream (or downstream) of an artifact")
    p.add_argument("ref", help="artifact id, pushed model version, or 'served' (the model being served)")
    p.add_argument("--downstream", action="store_true", help="what consumed it, instead of what produced it")
    p = metadata_command("compare", cmd_compare, "two models' evaluations side by side, and what differed in their inputs")
    p.add_argument("model_a", nargs="?", help="pushed version or artifact id (default: the serving model)")
    p.add_argument("model_b", nargs="?", help="pushed version or artifact id (default: the one pushed before A)")
    p.add_argument(
        "--slice",
        action="append",
        metavar="FEATURE[=VALUE]",
        help="only these slices (repeatable): a feature (every slice of it) or FEATURE=VALUE; 'overall' for the whole eval set",
    )

    p = metadata_command("validate", cmd_validate, "skew: serving data or a request log against the served model's training data")
    p.add_argument(
        "--data", required=True, help="CSV file or folder, or JSON lines (instances, or request bodies from serve --request-log)"
    )
    p.add_argument("--schema", default=DEFAULT_SCHEMA, help="default: %(default)s")
    p.add_argument("--model", help="pushed version or artifact id (default: the newest pushed model)")
    p = metadata_command("report", cmd_report, "one static HTML report of a run: statistics, anomalies, drift, skew, evaluation")
    p.add_argument("run", nargs="?", help="run id (default: the latest run)")
    p.add_argument(
        "--output", default=os.path.join(DEFAULT_OUTPUT, "report.html"), help="the HTML file to write (default: %(default)s)"
    )
    p.add_argument("--schema", default=DEFAULT_SCHEMA, help="default: %(default)s")
    p.add_argument("--serving-data", help="also report skew of this serving data (as for validate)")
    p = metadata_command("rollback", cmd_rollback, "serve an earlier pushed model again (recorded in ML Metadata)")
    p.add_argument("--to", help="pushed version to serve (default: the one before the served one)")
    p.add_argument(
        "--model-dir", default=os.path.join(DEFAULT_OUTPUT, "serving"), help="Pusher's directory (default: %(default)s)"
    )

    serve_p = sub.add_parser("serve", help="REST predictions (TF Serving / Vertex AI format) from the pushed models")
    serve_p.add_argument(
        "--model-dir", default=os.path.join(DEFAULT_OUTPUT, "serving"), help="Pusher's directory (default: %(default)s)"
    )
    serve_p.add_argument("--model-name", default="taxi", help="the name in /v1/models/<name> (default: %(default)s)")
    serve_p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    serve_p.add_argument("--port", type=int, default=8501, help="port to listen on (default: %(default)s)")
    serve_p.add_argument("--version", type=int, help="pin this version (default: the newest, reloaded as new ones are pushed)")
    serve_p.add_argument("--no-batching", action="store_true", help="one model call per request")
    serve_p.add_argument("--max-batch-size", type=int, default=256, help="instances per batched model call")
    serve_p.add_argument("--batch-timeout-ms", type=float, default=2.0, help="longest wait to fill a batch")
    serve_p.add_argument("--max-instances", type=int, default=1000, help="instances per request")
    serve_p.add_argument("--poll-seconds", type=float, default=5.0, help="how often to look for new versions")
    serve_p.add_argument("--request-log", help="append each request's instances to this JSON-lines file (input for validate)")
    serve_p.set_defaults(func=cmd_serve)

    pred = sub.add_parser("predict", help="batch predictions with Beam RunInference (CSV or TFRecord in, CSV out)")
    pred.add_argument("--input", required=True, help="file or glob (CSV with a header, or TFRecord of tf.Example)")
    pred.add_argument("--output", required=True, help="folder for predictions-*.csv and dead_letter-*.jsonl")
    pred.add_argument("--model", help="a SavedModel folder (default: the newest version under --model-dir)")
    pred.add_argument(
        "--model-dir", default=os.path.join(DEFAULT_OUTPUT, "serving"), help="Pusher's directory (default: %(default)s)"
    )
    pred.add_argument("--json", action="store_true", help="print the result (outputs, counts per file) as JSON")
    pred.add_argument("--format", choices=["csv", "tfrecord"], help="default: from the file name")
    pred.add_argument("--key-columns", nargs="+", help="input columns copied to the output (default: all but the label's)")
    pred.add_argument(
        "--beam-args",
        nargs=argparse.REMAINDER,
        help="Beam options, e.g. --runner=DataflowRunner --project=P --region=R --temp_location=gs://...",
    )
    pred.set_defaults(func=cmd_predict)

    vertex = sub.add_parser("vertex", help="compile for / submit to Vertex AI Pipelines")
    vsub = _Subcommands(vertex.add_subparsers(dest="vertex_command", required=True), common)
    for name, func, text in (
        ("compile", cmd_vertex_compile, "write the pipeline spec JSON (offline; uploads nothing)"),
        ("submit", cmd_vertex_submit, "compile, then submit a PipelineJob (or a schedule)"),
    ):
        p = vsub.add_parser(name, help=text)
        p.add_argument("--config", help="JSON file of Vertex settings (see vertex.example.json)")
        for flag, flag_help in VERTEX_FLAGS.items():
            p.add_argument("--" + flag.replace("_", "-"), dest=flag, help=flag_help)
        p.add_argument("--train-steps", type=int, help="training steps")
        p.add_argument("--tune", type=int, metavar="TRIALS", help="tune first with this many trials, chosen by Vertex AI Vizier")
        p.add_argument("--parallel-trials", type=int, metavar="N", help="trials run at once when tuning (default 2)")
        p.add_argument("--output", default=os.path.join(HERE, "build", "pipeline.json"), help="spec path (default: %(default)s)")
        p.set_defaults(func=func)
        if name == "submit":
            p.add_argument("--spec", help="submit this compiled spec instead of compiling")
            p.add_argument("--dry-run", action="store_true", help="print the exact job request instead of sending it")
            p.add_argument("--wait", action="store_true", help="wait for the run to finish, streaming its state")
            p.add_argument(
                "--accept-anomalies",
                nargs="+",
                metavar="FEATURE[:KIND]",
                help="let the data gate pass these anomalies in this run (the job's accept_anomalies parameter)",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # absl (TFX, TF) logs at INFO by default; keep the console for results.
        import warnings

        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
        warnings.simplefilter("ignore")  # dependency deprecation notices
        for noisy in ("apache_beam", "tensorflow", "absl"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        # TFX logs "Execution N failed." at ERROR for every failure, a rejection by the data
        # gate included, above the table that says what is wrong; the table says it.
        for handler in logging.getLogger().handlers:
            handler.addFilter(
                lambda record: not record.getMessage().startswith("Execution ") or "failed" not in record.getMessage()
            )
    # Light modules only: a usage error or a query does not wait for TensorFlow to import.
    from pipeline.errors import ConfigError, DataValidationError
    from pipeline.stores import MetadataError
    from runners.errors import RunFailed, StoreBusy

    try:
        return args.func(args)
    except (UserError, ConfigError, MetadataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DataValidationError as e:
        print(f"error: {e}", file=sys.stderr)
        return DATA_REJECTED
    except (RunFailed, StoreBusy) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    from runners import process

    process.exit(main())
