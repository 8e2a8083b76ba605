#!/usr/bin/env python3
"""Command line for the TFX pipeline: run it locally, compile it for Vertex AI, query metadata.

Examples:
  python runner.py run                                  # bundled data -> outputs/
  python runner.py run --data data/ --output /tmp/out --train-steps 500
  python runner.py run --hparams '{"learning_rate": 0.001}'
"""

from __future__ import annotations

import os

# TFX 1.16's Keras code paths (Trainer, TFMA) need Keras 2; TF 2.16's tf.keras is Keras 3.
# This must be set before TensorFlow is imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Sequence  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "data")
DEFAULT_SCHEMA = os.path.join(HERE, "schemas", "schema.pbtxt")
DEFAULT_OUTPUT = os.path.join(HERE, "outputs")

logger = logging.getLogger("runner")


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


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline import local

    cfg = local.build_config(
        output_dir=args.output,
        data_root=args.data,
        schema_path=args.schema,
        train_steps=args.train_steps,
        hparams=_hparams(args.hparams),
        enable_cache=not args.no_cache,
    )
    start = time.time()
    summary = local.run(cfg)
    summary["wall_seconds"] = round(time.time() - start, 1)
    print(local.format_summary(summary) if not args.json else json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runner.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--verbose", action="store_true", help="show TFX and Beam logs")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the pipeline locally (LocalDagRunner, Beam DirectRunner, SQLite MLMD)")
    run.add_argument("--data", default=DEFAULT_DATA, help="folder with the input CSV files (default: %(default)s)")
    run.add_argument("--schema", default=DEFAULT_SCHEMA, help="curated schema .pbtxt (default: %(default)s)")
    run.add_argument("--output", default=DEFAULT_OUTPUT, help="artifacts, metadata.sqlite and serving/ go here")
    run.add_argument("--train-steps", type=int, default=None, help="training steps (default: the config's)")
    run.add_argument("--hparams", help="JSON object or file overriding hyperparameters")
    run.add_argument("--no-cache", action="store_true", help="re-execute every component")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # absl (TFX, TF) logs at INFO by default; keep the console for results.
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.WARNING)
    from pipeline.configs import ConfigError
    from pipeline.metadata import MetadataError

    try:
        return args.func(args)
    except (UserError, ConfigError, MetadataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
