"""Times the end of a pipeline command's process: the interpreter's normal exit against
`runners/process.exit` (exit handlers, flush, no teardown), once TensorFlow, TFX, TFMA and
Beam are loaded and TensorFlow has run, as in `runner.py run`.

Each repetition runs one fresh process per mode, interleaved; a child prints the time at which
its work is done and the parent times the rest, until the process has ended.

    .venv/bin/python bench/exit_bench.py [--repeat 3]

Prints a Markdown table (recorded in bench/EXIT.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("sys.exit", "process.exit")


def child(mode: str) -> None:
    sys.path.insert(0, ROOT)
    import apache_beam  # noqa: F401
    import tensorflow as tf
    import tensorflow_model_analysis  # noqa: F401
    import tfx.v1  # noqa: F401

    tf.reduce_sum(tf.constant([1.0, 2.0]))  # TensorFlow's runtime started
    print(time.time(), flush=True)
    if mode == "process.exit":
        from runners import process

        process.exit(0)
    sys.exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    seconds: dict[str, list[float]] = {m: [] for m in MODES}
    for i in range(args.repeat):
        for mode in MODES[i % 2 :] + MODES[: i % 2]:
            done = subprocess.run(
                [sys.executable, __file__, "--child", mode], capture_output=True, text=True, env=env, check=True
            )
            ended = time.time()
            seconds[mode].append(ended - float(done.stdout.strip().splitlines()[-1]))
    print("| exit | seconds from the work's end to the process's end (median) | runs |")
    print("|---|---:|---|")
    for mode in MODES:
        runs = ", ".join(f"{s:.2f}" for s in seconds[mode])
        print(f"| {mode} | {statistics.median(seconds[mode]):.2f} | {runs} |")


if __name__ == "__main__":
    main()
