"""Times TFX's Transform executor alone, on the inputs of a finished pipeline run.

Transform is the pipeline's largest data stage. This re-runs only it: the newest run's
Transform inputs (examples and schema) are read from ML Metadata, and TFX's own Transform
executor runs on them with this project's `preprocessing_fn` and in_memory Beam args, each
repetition in a fresh process, in tf.Transform's TF2 mode and in its TF1 graph mode
(`force_tf_compat_v1`, the pipeline's since pipeline.TRANSFORM_TF1_GRAPH), side by side;
and, with `--modes ... tf1_compat_beam_uncached`, in TF1 mode without pipeline/beam_speed.py
(Beam's own DoFn introspection, uncached: what that fix buys). Every mode's outputs are
compared with the pipeline mode's, feature by feature.

    .venv/bin/python bench/transform_bench.py --run-output outputs [--repeat 2]

`--run-output` is a `runner.py run --output` folder (or the benchmark's `<workdir>/ours`).
Writes nothing outside a temporary folder; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# mode -> (force_tf_compat_v1, pipeline/beam_speed.py applied, as the pipeline's Transform does)
MODES = {"tf2": (0, True), "tf1_compat": (1, True), "tf1_compat_beam_uncached": (1, False)}
PIPELINE_MODE = "tf1_compat"
# z-scores of latitudes (spread 0.02 degrees) differ by up to ~2e-4 between the modes: float32
# holds a latitude to ~4e-6 degrees. A real change of a transformation is far larger.
FLOAT_TOLERANCE = 1e-3


def transform_inputs(run_output: str) -> dict[str, dict]:
    """URIs and split names of the newest run's Transform inputs."""
    from ops.queries import open_metadata, prop
    from pipeline.configs import PIPELINE_NAME

    md = open_metadata(os.path.join(run_output, "metadata.sqlite"), PIPELINE_NAME)
    graph = md.latest_run().output("transform", "transform_graph")
    if graph is None:
        raise SystemExit(f"{run_output}: the newest run has no Transform output")
    _, inputs = md.producer(graph)
    return {
        key: {"uri": inputs[key][0].uri, "split_names": prop(inputs[key][0], "split_names")} for key in ("examples", "schema")
    }


def child(inputs: dict, tf1: int, out: str, beam_speed: bool = True) -> float:
    """One Transform execution in this process; returns its seconds."""
    from tfx.components.transform.executor import Executor
    from tfx.types import standard_artifacts

    if beam_speed:
        from pipeline import beam_speed as speed

        speed.apply()

    from pipeline.configs import BEAM_MODES
    from pipeline.pipeline import PREPROCESSING_FN

    examples = standard_artifacts.Examples()
    examples.uri, examples.split_names = inputs["examples"]["uri"], inputs["examples"]["split_names"]
    schema = standard_artifacts.Schema()
    schema.uri = inputs["schema"]["uri"]
    outputs = {
        "transformed_examples": standard_artifacts.Examples(),
        "transform_graph": standard_artifacts.TransformGraph(),
        "updated_analyzer_cache": standard_artifacts.TransformCache(),
    }
    for key, artifact in outputs.items():
        artifact.uri = os.path.join(out, key)
    context = Executor.Context(
        beam_pipeline_args=list(BEAM_MODES["in_memory"]), tmp_dir=os.path.join(out, "tmp"), unique_id="bench"
    )
    # As the pipeline configures Transform (pipeline/pipeline.py), bar the mode; and the
    # transformed examples are written (the pipeline's Transform writes none) to compare modes.
    properties = {"preprocessing_fn": PREPROCESSING_FN, "disable_statistics": 1, "force_tf_compat_v1": tf1, "custom_config": "{}"}
    start = time.time()
    Executor(context).Do({"examples": [examples], "schema": [schema]}, {k: [v] for k, v in outputs.items()}, properties)
    seconds = time.time() - start
    if not os.path.isdir(os.path.join(outputs["transform_graph"].uri, "transform_fn")):
        raise RuntimeError("Transform wrote no transform_fn")
    return seconds


def transformed(out: str) -> dict[str, dict[str, list]]:
    """Split -> feature -> every value of Transform's output, in order."""
    import glob

    import tensorflow as tf

    splits: dict[str, dict[str, list]] = {}
    for folder in sorted(glob.glob(os.path.join(out, "transformed_examples", "Split-*"))):
        values: dict[str, list] = {}
        files = sorted(glob.glob(os.path.join(folder, "*")))
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            for name, f in tf.train.Example.FromString(record.numpy()).features.feature.items():
                values.setdefault(name, []).extend(f.float_list.value or f.int64_list.value or f.bytes_list.value)
        splits[os.path.basename(folder)] = values
    return splits


def differences(a: dict, b: dict) -> tuple[list[str], float]:
    """(what differs beyond float noise, the largest difference of a float feature) between two
    Transform outputs. Ints and strings (ids, vocabularies, the label) must be equal; floats
    differ by float32 rounding between the modes, so only a difference over FLOAT_TOLERANCE
    counts."""
    import numpy as np

    if a.keys() != b.keys():
        return [f"splits {sorted(a)} vs {sorted(b)}"], 0.0
    found, largest = [], 0.0
    for split in a:
        if a[split].keys() != b[split].keys():
            found.append(f"{split}: features {sorted(a[split])} vs {sorted(b[split])}")
            continue
        for name, x in a[split].items():
            y = b[split][name]
            if len(x) != len(y):
                found.append(f"{split}/{name} ({len(x)} vs {len(y)} values)")
            elif x and isinstance(x[0], float):
                gap = float(np.max(np.abs(np.subtract(x, y))))
                largest = max(largest, gap)
                if gap > FLOAT_TOLERANCE:
                    found.append(f"{split}/{name} (largest difference {gap:.1e})")
            elif x != y:
                found.append(f"{split}/{name}")
    return found, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-output", required=True, help="a runner.py run --output folder")
    parser.add_argument("--repeat", type=int, default=2, help="runs per mode, each in a fresh process")
    parser.add_argument("--modes", nargs="+", choices=sorted(MODES), default=["tf2", PIPELINE_MODE], help="default: %(default)s")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps({"seconds": child(spec["inputs"], spec["tf1"], spec["out"], spec["beam_speed"])}))
        return

    inputs = transform_inputs(args.run_output)
    seconds: dict[str, list[float]] = {mode: [] for mode in args.modes}
    outputs: dict[str, dict] = {}
    for _ in range(args.repeat):
        for mode in args.modes:  # interleaved, so drift in the machine hits both
            tf1, beam_speed = MODES[mode]
            with tempfile.TemporaryDirectory(prefix="transform-bench-") as out:
                spec = json.dumps({"inputs": inputs, "tf1": tf1, "out": out, "beam_speed": beam_speed})
                done = subprocess.run(
                    [sys.executable, __file__, "--run-output", args.run_output, "--child", spec],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                )
                seconds[mode].append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
                outputs.setdefault(mode, transformed(out))
    print(f"Transform executor alone on {inputs['examples']['uri']} (in_memory Beam), {args.repeat} runs per mode:\n")
    print("| mode | median (s) | runs (s) |\n|---|---:|---|")
    for mode, values in seconds.items():
        print(f"| {mode} | {statistics.median(values):.1f} | {', '.join(f'{v:.1f}' for v in values)} |")
    reference = PIPELINE_MODE if PIPELINE_MODE in outputs else next(iter(outputs))
    for mode in outputs:
        if mode == reference:
            continue
        found, largest = differences(outputs[mode], outputs[reference])
        verdict = "the same" if not found else "DIFFERENT in " + ", ".join(found)
        print(
            f"\noutputs of {mode} and {reference}, every split and feature: {verdict} (ints and strings equal, floats "
            f"within {FLOAT_TOLERANCE:g}; largest float difference {largest:.1e})"
        )


if __name__ == "__main__":
    main()
