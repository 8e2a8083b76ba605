#!/usr/bin/env python3
"""Export and load of the served model: this checkout's `modules/trainer.py` against an
earlier one, on the same Keras model and the same Transform graph, interleaved.

  .venv/bin/python bench/export_bench.py [--before 9f2fa2f] [--repeat 2]

A model is trained a little on the tests' sample (400 rows through tf.Transform, as the
tests' fixtures do), then exported by both versions of `export_serving_model` (the earlier
one is `git show <before>:modules/trainer.py`, loaded beside this checkout's modules/), each
`--repeat` times; every export is then loaded with `tf.saved_model.load` in a fresh process.
Prints the seconds, the number of functions in saved_model.pb and its size. Writes nothing
outside a temporary folder.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
BEFORE = "9f2fa2f"  # main before the one-copy export
LOAD = (
    "import os, sys, time; os.environ['TF_USE_LEGACY_KERAS'] = '1'; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '2'\n"
    "import tensorflow as tf\n"
    "start = time.perf_counter(); tf.saved_model.load(sys.argv[1]); print(time.perf_counter() - start)\n"
)


def trainer_at(commit: str, folder: str):
    """modules/trainer.py as it was at `commit`, as a module of its own."""
    source = subprocess.run(
        ["git", "-C", ROOT, "show", f"{commit}:modules/trainer.py"], capture_output=True, text=True, check=True
    ).stdout
    path = os.path.join(folder, "trainer_before.py")
    with open(path, "w") as f:
        f.write(source)
    spec = importlib.util.spec_from_file_location("modules.trainer_before", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def library_size(export_dir: str) -> tuple[int, int]:
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_dir, "saved_model.pb")
    with open(path, "rb") as f:
        saved = saved_model_pb2.SavedModel.FromString(f.read())
    return len(saved.meta_graphs[0].graph_def.library.function), os.path.getsize(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default=BEFORE, help="the commit to compare with (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=2, help="exports (and loads) per version (default: %(default)s)")
    args = parser.parse_args()

    import tensorflow_transform as tft

    from helpers import analyze_and_transform, batch, read_rows
    from modules import trainer
    from modules.hparams import HParams
    from modules.model import build_model

    work = tempfile.mkdtemp(prefix="export-bench-")
    before = trainer_at(args.before, work)
    graph = os.path.join(work, "transform_graph")
    features, labels = batch(analyze_and_transform(read_rows(400), graph))
    model = build_model(HParams(dropout=0.0))
    model.fit(features, labels, batch_size=64, epochs=1, verbose=0)
    versions = {f"before ({args.before})": before, "this checkout": trainer}
    exports: dict[str, list[float]] = {name: [] for name in versions}
    loads: dict[str, list[float]] = {name: [] for name in versions}
    sizes = {}
    for n in range(args.repeat):
        for name, module in versions.items():  # interleaved, so drift in the machine hits both
            out = os.path.join(work, f"{len(sizes)}-{n}")
            start = time.perf_counter()
            module.export_serving_model(model, tft.TFTransformOutput(graph), out)
            exports[name].append(time.perf_counter() - start)
            sizes[name] = library_size(out)
            done = subprocess.run([sys.executable, "-c", LOAD, out], capture_output=True, text=True, check=True)
            loads[name].append(float(done.stdout.strip().splitlines()[-1]))
    print(f"Export and load, the tests' sample model, {args.repeat} each, interleaved:\n")
    print("| code | export (s), median | load (s), median | functions in saved_model.pb | saved_model.pb (bytes) |")
    print("|---|---:|---:|---:|---:|")
    for name in versions:
        functions, size = sizes[name]
        print(
            f"| {name} | {statistics.median(exports[name]):.2f} | {statistics.median(loads[name]):.2f} | {functions} | {size:,} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
