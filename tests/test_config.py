"""Configuration validation, the CLI's error handling, and the pipeline's wiring."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import runner
from helpers import EXPECTED_EDGES, ROOT, SCHEMA_PATH
from modules import code
from modules.hparams import HParams
from pipeline import configs
from pipeline import pipeline as P


def cfg(tmp_path, **overrides):
    return configs.local_config(str(tmp_path), str(ROOT / "data"), str(SCHEMA_PATH), **overrides)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"train_steps": 0}, "train_steps"),
        ({"eval_steps": "10"}, "eval_steps"),
        ({"pipeline_name": "bad name!"}, "pipeline_name"),
        ({"pipeline_root": ""}, "pipeline_root"),
        ({"split_buckets": (("train", 2), ("test", 1))}, "split_buckets"),
        ({"split_buckets": (("train", 0), ("eval", 1))}, "split_buckets"),
        ({"tune_trials": 2, "tune_parallel_trials": 3}, "tune_parallel_trials"),
        # Local trials run one at a time (parallel trials are Vertex AI Training replicas).
        ({"tune_trials": 4, "tune_parallel_trials": 2}, "tune_parallel_trials"),
        ({"tune_trials": 4, "tune_parallel_trials": 0}, "tune_parallel_trials"),
    ],
)
def test_bad_pipeline_config_names_the_field(tmp_path, overrides, field):
    with pytest.raises(configs.ConfigError, match=f"^{field}:"):
        cfg(tmp_path, **overrides)


def test_bad_thresholds_name_the_field():
    with pytest.raises(configs.ConfigError, match="thresholds.min_auc"):
        configs.EvalThresholds(min_auc=1.5)


def test_data_root_must_hold_csv(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(configs.ConfigError, match="^data_root: no .csv file"):
        configs.local_config(str(tmp_path), str(tmp_path / "empty"), str(SCHEMA_PATH))
    with pytest.raises(configs.ConfigError, match="^data_root: no such directory"):
        configs.local_config(str(tmp_path), str(tmp_path / "missing"), str(SCHEMA_PATH))


def test_beam_mode_auto_follows_the_input_size(tmp_path, monkeypatch):
    small = cfg(tmp_path)  # the bundled 1.9 MB CSV
    assert small.beam_pipeline_args == configs.BEAM_MODES["in_memory"]
    monkeypatch.setattr(configs, "MULTI_PROCESSING_FROM_BYTES", 1024)
    assert cfg(tmp_path).beam_pipeline_args == configs.BEAM_MODES["multi_processing"]
    assert cfg(tmp_path, beam_mode="in_memory").beam_pipeline_args == configs.BEAM_MODES["in_memory"]
    explicit = ("--runner=DirectRunner",)
    assert cfg(tmp_path, beam_pipeline_args=explicit).beam_pipeline_args == explicit
    with pytest.raises(configs.ConfigError, match="beam_mode"):
        cfg(tmp_path, beam_mode="threads")


@pytest.mark.parametrize("mode", sorted(configs.BEAM_MODES))
def test_local_beam_args_name_the_dependency_so_tfx_builds_no_sdist(mode, monkeypatch):
    """Without a dependency flag, every Beam component copies TFX's installation and builds an
    sdist of it first (~1 s each) for DirectRunner workers that already have it."""
    from tfx.utils import dependency_utils

    def build_ephemeral_package():
        raise AssertionError("TFX built an ephemeral sdist for a local run")

    monkeypatch.setattr(dependency_utils, "build_ephemeral_package", build_ephemeral_package)
    args = list(configs.BEAM_MODES[mode])
    assert dependency_utils.make_beam_dependency_flags(args) == args
    assert os.path.isfile(configs.SETUP_FILE)


def test_building_the_local_pipeline_imports_no_google_cloud_sdk():
    """tfx.v1 imports google-cloud-aiplatform through its extensions: 2.4 s in every process."""
    code = (
        "import sys; from runners import local; from modules import trainer; from pipeline import pipeline as P; "
        "P.create_pipeline(local.build_config('/tmp/unused', 'data', 'schemas/schema.pbtxt')); "
        "print(sorted(m for m in sys.modules if m == 'tfx.v1' or m.startswith('google.cloud.aiplatform')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_local_runner_loads_tensorflow_only_when_it_runs():
    """`run` prints its first line once the configuration and the store are checked; TensorFlow
    and TFX (10 s on a busy machine) load afterwards, under the progress lines."""
    code = (
        "import sys; from runners import local; "
        "cfg = local.build_config('/tmp/unused', 'data', 'schemas/schema.pbtxt', accept_anomalies=('fare',)); "
        "local.check_store(cfg); "
        "print(sorted(m for m in ('tensorflow', 'tfx', 'apache_beam') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"batch_size": 0}, "hparams.batch_size is out of range"),
        ({"batch_size": "64"}, "hparams.batch_size must be int"),
        ({"dropout": 1.0}, "hparams.dropout is out of range"),
        ({"warm_start": "yes"}, "hparams.warm_start must be bool"),
        ({"hidden_units": [64, -1]}, "hparams.hidden_units is out of range"),
        ({"learnin_rate": 0.1}, "unknown hparams: learnin_rate"),
    ],
)
def test_bad_hparams_name_the_field(values, message):
    with pytest.raises(ValueError, match=message):
        HParams.from_dict(values)


def test_hparams_round_trip_through_custom_config_json():
    import json

    hp = HParams(hidden_units=(32, 16), learning_rate=0.01, warm_start=False)
    assert HParams.from_dict(json.loads(json.dumps(hp.to_dict()))) == hp


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--data", "/nonexistent"], "error: data_root: no such directory: /nonexistent"),
        (["run", "--hparams", '{"nope": 1}'], "error: --hparams: unknown hparams: nope"),
        (["run", "--hparams", "{not json"], "error: --hparams: not a JSON object or file"),
        (["run", "--train-steps", "0"], "error: train_steps: must be a positive integer"),
        (["run", "--metadata", "postgresql://u@127.0.0.1/db"], "error: metadata_uri: ml-metadata 1.16's PostgreSQL backend"),
    ],
)
def test_cli_user_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert runner.main([*argv, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message)
    assert len(err.splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing was written


def pipeline_edges(pipeline) -> dict[str, set[str]]:
    return {c.id: {u.id for u in c.upstream_nodes} for c in pipeline.components}


def test_pipeline_wiring(tmp_path):
    assert pipeline_edges(P.create_pipeline(cfg(tmp_path))) == EXPECTED_EDGES
    # --tune: the Tuner, on the raw examples and the transform graph, feeds the Trainer.
    tuned = {**EXPECTED_EDGES, P.TUNER: {P.EXAMPLE_GEN, P.TRANSFORM, P.SCHEMA_IMPORTER}}
    tuned[P.TRAINER] = {P.EXAMPLE_GEN, P.TRANSFORM, P.SCHEMA_IMPORTER, P.TUNER}
    assert pipeline_edges(P.create_pipeline(cfg(tmp_path, tune_trials=4))) == tuned


def test_cross_run_inputs_are_resolved_in_this_pipelines_store(tmp_path):
    """Transform, the Trainer, the Evaluator and the gate are told the store (never its
    password) and the pipeline name that scopes every resolution."""
    pipeline = P.create_pipeline(
        cfg(tmp_path, metadata_uri="mysql://mlmd:s3cret@db:3306/mlmd", pipeline_name="other", train_window_spans=4)
    )
    expected = {"store": "mysql://mlmd@db:3306/mlmd", "pipeline": "other"}
    by_id = {c.id: c for c in pipeline.components}
    assert json.loads(_custom_config(pipeline, P.TRANSFORM)["lineage"]) == expected
    assert _custom_config(pipeline, P.TRANSFORM)["train_window_spans"] == 4
    assert json.loads(_custom_config(pipeline, P.TRAINER)["lineage"]) == expected
    tuned = P.create_pipeline(
        cfg(tmp_path, metadata_uri="mysql://mlmd:s3cret@db:3306/mlmd", pipeline_name="other", tune_trials=2)
    )
    assert json.loads(_custom_config(tuned, P.TUNER)["lineage"]) == expected  # the Tuner trains on the window too
    for component in (P.EVALUATOR, P.DATA_GATE):
        assert json.loads(by_id[component].exec_properties["lineage"]) == expected
    assert "s3cret" not in json.dumps({c.id: str(c.exec_properties) for c in pipeline.components})


def _custom_config(pipeline, component_id: str) -> dict:
    component = next(c for c in pipeline.components if c.id == component_id)
    return json.loads(component.exec_properties["custom_config"])


def test_hparams_reach_the_trainer_config(tmp_path):
    hp = HParams(learning_rate=0.01)
    custom = _custom_config(P.create_pipeline(cfg(tmp_path, hparams=hp)), P.TRAINER)
    assert HParams.from_dict(custom["hparams"]) == hp


@pytest.mark.parametrize(
    "edited, reruns",
    [
        ("model.py", {P.TRAINER, P.TUNER}),
        ("trainer.py", {P.TRAINER, P.TUNER}),
        ("hparams.py", {P.TRAINER, P.TUNER}),
        ("preprocessing.py", {P.TRANSFORM}),
        ("features.py", {P.TRANSFORM, P.TRAINER, P.TUNER}),
        ("tuning.py", {P.TUNER}),
        ("vizier.py", {P.TUNER}),
    ],
)
def test_editing_user_code_changes_only_the_cache_keys_of_components_that_run_it(tmp_path, edited, reruns):
    """A component's cache key holds the digest of the code it runs, and only that code."""
    modules_dir = pathlib.Path(P.F.__file__).parent
    copy = tmp_path / "modules"
    shutil.copytree(modules_dir, copy)
    keys = {P.TRANSFORM: code.TRANSFORM_CODE, P.TRAINER: code.TRAINER_CODE, P.TUNER: code.TUNER_CODE}
    before = {c: code.fingerprint(files, str(copy)) for c, files in keys.items()}
    with open(copy / edited, "a") as f:
        f.write("\n# edited\n")
    after = {c: code.fingerprint(files, str(copy)) for c, files in keys.items()}
    assert {c for c in keys if before[c] != after[c]} == reruns
    # And create_pipeline puts those digests into each component's configuration.
    pipeline = P.create_pipeline(cfg(tmp_path, tune_trials=2))
    for component, files in keys.items():
        assert _custom_config(pipeline, component)["module_fingerprint"] == code.fingerprint(files)


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from _subcommands(sub)


def test_every_subcommand_help_shows_examples_and_takes_verbose():
    parser = runner.build_parser()
    leaves = {name: sub for name, sub in _subcommands(parser) if not sub._subparsers}
    assert set(leaves) == {
        "run",
        "runs",
        "artifacts",
        "lineage",
        "compare",
        "validate",
        "report",
        "rollback",
        "serve",
        "predict",
        "compile",
        "submit",
    }
    for name, sub in leaves.items():
        assert "examples:\n  runner.py" in sub.format_help(), name
    assert parser.parse_args(["runs", "--verbose"]).verbose is True
    assert parser.parse_args(["--verbose", "runs"]).verbose is True
    assert parser.parse_args(["runs"]).verbose is False


def test_the_store_can_be_named_once_in_the_environment(tmp_path):
    """PIPELINE_METADATA is every command's default store; a query answers without importing
    TensorFlow (one line, at once)."""
    env = {**os.environ, "PIPELINE_METADATA": str(tmp_path / "team.sqlite")}
    done = subprocess.run([sys.executable, str(ROOT / "runner.py"), "runs"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: no metadata store at {tmp_path / 'team.sqlite'} (run the pipeline first)"
    heavy = "('tensorflow', 'tfx', 'apache_beam')"
    code = f"import runner, sys; runner.main(['runs']); print(sorted(m for m in {heavy} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_code_other_than_the_compiled_code_refuses_to_run():
    """On Vertex AI the spec is compiled from a checkout and runs the image's code: when the two
    differ, Transform and the Trainer stop instead of reusing cached outputs of other code."""
    from modules import code, preprocessing, trainer

    code.check(code.fingerprint(code.TRANSFORM_CODE), code.TRANSFORM_CODE)  # the same code runs
    with pytest.raises(code.CodeMismatch, match=r"compiled from modules@0000000000000000 but this image runs modules@\w{16}"):
        preprocessing.preprocessing_fn({}, custom_config={"module_fingerprint": "0" * 16})
    fn_args = type("FnArgs", (), {"custom_config": {"module_fingerprint": "1" * 16}})()
    with pytest.raises(code.CodeMismatch, match="modules@1111111111111111"):
        trainer.run_fn(fn_args)
