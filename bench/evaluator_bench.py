"""Times TFX's Evaluator executor alone, with no baseline, with a baseline TFMA evaluates, and
with a baseline whose figures are read from its own recorded evaluation.

On a finished run with at least two models (e.g. `runner.py run` twice with another learning
rate, or `bench/pipeline_bench.py --workdir W` then `--run-output W/ours`): the newest model is
the candidate, the one before it the baseline, the candidate's eval split the data. Each
repetition of each mode runs in a fresh process, the modes interleaved (the order rotated
between repetitions):

  none       the candidate alone (a first run)
  evaluated  the candidate and the baseline, both evaluated by TFMA in one pass
  recorded   the candidate alone, completed with the baseline's own evaluation of the same
             data (pipeline/recorded_baseline.py, what the Evaluator does when it can)

with `--beside`, two ways of computing the baseline's figures at the same time as the
candidate's (tried, slower: bench/EVALUATOR.md), the outputs merged as in `recorded`:

  beside:thread   the baseline alone in a second thread of the same process
  beside:process  the baseline alone in a second process (its own imports)

and `none` and `evaluated` once more with TFMA's own functions (`:tfma-as-released`:
pipeline/tfma_speed.py not applied) and with its first fix only (`:label-lookup-fix-only`:
TFMA's own confusion matrices), whose outputs are compared too.

The baseline's own evaluation is made once first (untimed). The recorded mode's validation is
compared with the evaluated mode's, and its metrics within 1e-6.

    .venv/bin/python bench/evaluator_bench.py --run-output outputs [--repeat 2]

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
MODES = ("none", "evaluated", "recorded")
# The same Evaluator with TFMA's own `to_label_prediction_example_weight` (pipeline/tfma_speed.py
# not applied): what the fix buys, side by side.
UNPATCHED = ("none:tfma-as-released", "evaluated:tfma-as-released")
# With the label-lookup fix only (before the confusion-matrices fix): what the second buys.
FIRST_FIX_ONLY = ("none:label-lookup-fix-only", "evaluated:label-lookup-fix-only")
BESIDE = ("beside:thread", "beside:process")


def inputs(run_output: str) -> dict:
    """The newest model, the one before it, and the examples the newest was evaluated on."""
    from pipeline.configs import PIPELINE_NAME
    from pipeline.metadata_backends import open_backend

    g = open_backend(os.path.join(run_output, "metadata.sqlite"), PIPELINE_NAME).load()
    models = [m for m in g.of_type("Model") if (p := g.producer(m)) is not None and p.component == "trainer"]
    if len(models) < 2:
        raise SystemExit(f"{run_output}: needs two trained models (run the pipeline twice, another learning rate)")
    candidate, baseline = models[-1], models[-2]
    evaluator = next(e for e in g.consumers(candidate) if e.component == "evaluator")
    examples = g.input_artifacts(evaluator, "Examples")[0]
    return {
        "candidate": candidate.uri,
        "baseline": baseline.uri,
        "examples": examples.uri,
        "split_names": examples.props.get("split_names"),
    }


def child(args) -> float:
    """One Evaluator execution in this process; returns its seconds."""
    from pipeline import beam_speed, tfma_speed

    beam_speed.apply()
    mode, _, variant = args.child.partition(":")
    if variant == "label-lookup-fix-only":
        tfma_speed.apply(("label lookup",))
    elif variant != "tfma-as-released":  # what the pipeline's Evaluator executor applies
        tfma_speed.apply()
    from tfx.components.evaluator.executor import Executor
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from pipeline import recorded_baseline
    from pipeline.configs import BEAM_MODES, EvalThresholds
    from pipeline.eval_config import build_eval_config

    spec = json.loads(args.inputs)

    def artifact(cls, uri):
        a = cls()
        a.uri = uri
        return a

    examples = artifact(standard_artifacts.Examples, spec["examples"])
    examples.split_names = spec["split_names"]
    model = spec["baseline"] if mode == "baseline-alone" else spec["candidate"]
    input_dict = {"examples": [examples], "model": [artifact(standard_artifacts.Model, model)]}
    if mode == "evaluated":
        input_dict["baseline_model"] = [artifact(standard_artifacts.Model, spec["baseline"])]
    evaluation = artifact(standard_artifacts.ModelEvaluation, os.path.join(args.out, "evaluation"))
    blessing = artifact(standard_artifacts.ModelBlessing, os.path.join(args.out, "blessing"))
    os.makedirs(blessing.uri, exist_ok=True)
    config = build_eval_config(EvalThresholds())
    properties = {"eval_config": proto_utils.proto_to_json(config), "example_splits": "null"}
    context = Executor.Context(
        beam_pipeline_args=list(BEAM_MODES["in_memory"]), tmp_dir=os.path.join(args.out, "tmp"), unique_id="bench"
    )
    start = time.time()
    beside = _start_baseline_beside(variant, args, examples, properties) if mode == "beside" else None
    Executor(context).Do(input_dict, {"evaluation": [evaluation], "blessing": [blessing]}, properties)
    if beside is not None:
        recorded = beside()
    else:
        recorded = args.recorded
    if mode in ("recorded", "beside"):  # what the pipeline's Evaluator executor does then
        recorded_baseline.complete_for_models(evaluation.uri, recorded, config, spec["candidate"], spec["baseline"])
    return time.time() - start


def _start_baseline_beside(how: str, args, examples, properties):
    """Starts the baseline's own evaluation beside the candidate's (a thread or a process);
    returns a function that waits for it and returns the evaluation's folder."""
    out = os.path.join(args.out, "baseline")
    if how == "process":
        command = [sys.executable, __file__, "--child", "baseline-alone", "--inputs", args.inputs, "--out", out]
        proc = subprocess.Popen(command + ["--recorded", ""], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def wait() -> str:
            if proc.wait() != 0:
                raise SystemExit("the baseline's evaluation failed")
            return os.path.join(out, "evaluation")

        return wait
    import threading

    from tfx.components.evaluator.executor import Executor
    from tfx.types import standard_artifacts

    from pipeline.configs import BEAM_MODES

    spec = json.loads(args.inputs)
    outputs = {}
    for key, cls in (("evaluation", standard_artifacts.ModelEvaluation), ("blessing", standard_artifacts.ModelBlessing)):
        outputs[key] = [cls()]
        outputs[key][0].uri = os.path.join(out, key)
    os.makedirs(outputs["blessing"][0].uri, exist_ok=True)
    model = standard_artifacts.Model()
    model.uri = spec["baseline"]
    context = Executor.Context(beam_pipeline_args=list(BEAM_MODES["in_memory"]), tmp_dir=os.path.join(out, "tmp"), unique_id="b")
    thread = threading.Thread(target=Executor(context).Do, args=({"examples": [examples], "model": [model]}, outputs, properties))
    thread.start()

    def join() -> str:
        thread.join()
        return outputs["evaluation"][0].uri

    return join


def run_child(spec: dict, mode: str, out: str, recorded: str = "") -> float:
    command = [sys.executable, __file__, "--child", mode, "--inputs", json.dumps(spec), "--out", out, "--recorded", recorded]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def compare(recorded: str, evaluated: str) -> str:
    """One mode's output (`recorded`) against another's (`evaluated`)."""
    import math

    import tensorflow_model_analysis as tfma

    def metrics(out):
        return {
            (str(m.slice_key), str(kv.key)): kv.value.double_value.value
            for m in tfma.load_metrics(out)
            for kv in m.metric_keys_and_values
        }

    a, b = metrics(recorded), metrics(evaluated)
    same_keys = set(a) == set(b)
    worst = max((abs(a[k] - b[k]) for k in a if k in b and not (math.isnan(a[k]) and math.isnan(b[k]))), default=0.0)
    from pipeline.recorded_baseline import canonical

    ours, theirs = canonical(tfma.load_validation_result(recorded)), canonical(tfma.load_validation_result(evaluated))
    verdict = "the same" if ours == theirs else f"DIFFERENT ({ours.validation_ok} against {theirs.validation_ok})"
    return f"validation {verdict}; metric keys {'the same' if same_keys else 'DIFFERENT'}; largest metric difference {worst:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-output", help="a runner.py run --output folder with two trained models")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--beside", action="store_true", help="also the baseline evaluated beside the candidate")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--recorded", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        import logging

        logging.disable(logging.WARNING)
        print(child(args))
        return
    if not args.run_output:
        parser.error("--run-output is required")
    spec = inputs(args.run_output)
    with tempfile.TemporaryDirectory(prefix="evaluator-bench-") as work:
        recorded = os.path.join(work, "baseline-alone")
        run_child(spec, "baseline-alone", recorded)
        modes = MODES + FIRST_FIX_ONLY + UNPATCHED + (BESIDE if args.beside else ())
        times: dict[str, list[float]] = {m: [] for m in modes}
        for i in range(args.repeat):
            for mode in modes[i % len(modes) :] + modes[: i % len(modes)]:  # each mode first once
                out = os.path.join(work, f"{mode}-{i}")
                times[mode].append(run_child(spec, mode, out, os.path.join(recorded, "evaluation")))
                print(f"{mode} #{i + 1}: {times[mode][-1]:.1f} s", file=sys.stderr, flush=True)
        evaluation = {m: os.path.join(work, f"{m}-0", "evaluation") for m in modes}
        checks = [
            "recorded against evaluated: " + compare(evaluation["recorded"], evaluation["evaluated"]),
            *(f"{m} against evaluated: " + compare(evaluation[m], evaluation["evaluated"]) for m in modes if m in BESIDE),
            "evaluated against the label-lookup fix only: " + compare(evaluation["evaluated"], evaluation[FIRST_FIX_ONLY[1]]),
            "evaluated against TFMA as released: " + compare(evaluation["evaluated"], evaluation[UNPATCHED[1]]),
        ]
    print(f"Evaluator alone on {spec['examples']} (candidate {spec['candidate']}, baseline {spec['baseline']}):\n")
    print("| mode | seconds (median) | runs | against none (same TFMA) |")
    print("|---|---:|---|---:|")
    for mode in modes:
        median = statistics.median(times[mode])
        variant = mode.partition(":")[2]  # compared with `none` under the same TFMA, where there is one
        none = statistics.median(times.get(f"none:{variant}", times["none"]))
        runs = ", ".join(f"{t:.1f}" for t in times[mode])
        print(f"| {mode} | {median:.1f} | {runs} | {median / none:.2f}x |")
    print("\n" + "\n".join(f"- {c}" for c in checks))


if __name__ == "__main__":
    main()
