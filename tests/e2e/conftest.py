"""Fixtures for end-to-end tests: real pipeline runs, and a real PostgreSQL server."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time

import pytest

from helpers import DATA_CSV, SAMPLE_ROWS, SCHEMA_PATH
from modules.hparams import HParams
from pipeline import configs, local

SAMPLE_STEPS = 300


def write_sample(path, n: int) -> str:
    """The first n data rows of the bundled CSV, header included."""
    os.makedirs(path, exist_ok=True)
    with open(DATA_CSV) as src, open(os.path.join(path, "taxi.csv"), "w") as dst:
        for i, line in enumerate(src):
            if i > n:
                break
            dst.write(line)
    return str(path)


def sample_config(root, **overrides) -> configs.PipelineConfig:
    values = dict(
        train_steps=SAMPLE_STEPS,
        eval_steps=5,
        # 2,000 training rows: a lower bar than the full data's, still far above chance.
        thresholds=configs.EvalThresholds(min_auc=0.85, min_accuracy=0.8),
    )
    values.update(overrides)
    return configs.local_config(str(root / "out"), write_sample(root / "data", SAMPLE_ROWS), str(SCHEMA_PATH), **values)


def retrain_config(cfg: configs.PipelineConfig) -> configs.PipelineConfig:
    """Same data, other hyperparameters; may be a little worse than the first model and still
    be pushed, so that there are two pushed models to compare."""
    return cfg.replace(
        hparams=HParams(learning_rate=0.001, hidden_units=(64, 32)),
        thresholds=configs.EvalThresholds(min_auc=0.85, min_accuracy=0.8, max_auc_regression=0.05, max_accuracy_regression=0.05),
    )


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory):
    """One run of the pipeline on the sample, SQLite metadata: (config, summary)."""
    cfg = sample_config(tmp_path_factory.mktemp("e2e"))
    return cfg, local.run(cfg)


@pytest.fixture(scope="session")
def sqlite_history(sample_run):
    """The sample run, then an unchanged re-run (cached), then a retrain with other
    hyperparameters: summaries in run order."""
    cfg, first = sample_run
    rerun = local.run(cfg)
    retrain = local.run(retrain_config(cfg))
    return cfg, [first, rerun, retrain]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A real PostgreSQL server (Debian's binaries) on a loopback port, for the session.

    Yields a URI for a database that MLMD creates on first connection.
    """
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        pytest.fail("PostgreSQL is not installed: run scripts/ensure-postgres.sh (make test does)")
    bin_dir = bins[-1]
    root = tmp_path_factory.mktemp("pg")
    # The server refuses to run as root: run it as the package's postgres user then.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(root, "postgres")
    data, port = root / "data", _free_port()
    subprocess.run([*as_user, f"{bin_dir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w",
                    "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        yield f"postgresql://postgres@127.0.0.1:{port}/mlmd"
    finally:
        subprocess.run([*as_user, f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "fast", "stop"], capture_output=True)


@pytest.fixture(scope="session")
def postgres_history(postgres, tmp_path_factory):
    """Two runs on the sample against the PostgreSQL store (a first model, then a retrain)."""
    cfg = sample_config(tmp_path_factory.mktemp("e2e_pg"), metadata_uri=postgres, train_steps=150)
    first = local.run(cfg)
    second = local.run(retrain_config(cfg))
    return cfg, [first, second]
