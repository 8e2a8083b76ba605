"""Fixtures for end-to-end tests: real pipeline runs, and a real MariaDB server."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile
import time

import pytest

from helpers import DATA_CSV, SAMPLE_ROWS, SCHEMA_PATH, free_port
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


@pytest.fixture(scope="session")
def mariadb():
    """A real MariaDB server (Debian's package) on a loopback port, for the session, with a
    user and password. Yields a URI for a database that MLMD creates on first connection.

    (Not PostgreSQL: ml-metadata 1.16's PostgreSQL backend writes strings containing a
    backslash as 'E'... , a SQL syntax error, and TFX stores JSON with escapes; see README.)
    """
    server = "/usr/sbin/mariadbd"
    if not os.path.exists(server):
        pytest.fail("MariaDB is not installed: run scripts/ensure-test-tools.sh (make test does)")
    # Not under pytest's tmp root: that is private to the user running the tests, and as root
    # the server runs as the package's mysql user.
    root = pathlib.Path(tempfile.mkdtemp(prefix="mlmd-mariadb-"))
    as_root = os.geteuid() == 0
    if as_root:
        shutil.chown(root, "mysql")
    user = ["--user=mysql"] if as_root else []
    data, sock, port = root / "data", root / "sock", free_port()
    done = subprocess.run(["mariadb-install-db", f"--datadir={data}", "--auth-root-authentication-method=normal",
                           "--skip-test-db", *user], capture_output=True, text=True)
    if done.returncode:
        pytest.fail(f"mariadb-install-db failed: {done.stderr.strip()}")
    log = open(root / "log", "w")
    proc = subprocess.Popen([server, "--no-defaults", f"--datadir={data}", f"--port={port}", "--bind-address=127.0.0.1",
                             f"--socket={sock}", f"--pid-file={root / 'pid'}", *user], stdout=log, stderr=log)
    try:
        deadline = time.time() + 60
        while not sock.exists():
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"mariadbd did not start: {(root / 'log').read_text()[-2000:]}")
            time.sleep(0.2)
        sql = "CREATE USER 'mlmd'@'127.0.0.1' IDENTIFIED BY 's3cret'; GRANT ALL ON *.* TO 'mlmd'@'127.0.0.1';"
        subprocess.run(["mariadb", f"--socket={sock}", "-uroot", "-e", sql], check=True, capture_output=True)
        yield f"mysql://mlmd:s3cret@127.0.0.1:{port}/mlmd"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb_history(mariadb, tmp_path_factory):
    """Two runs on the sample against the MariaDB store (a first model, then a retrain)."""
    cfg = sample_config(tmp_path_factory.mktemp("e2e_mariadb"), metadata_uri=mariadb, train_steps=150)
    first = local.run(cfg)
    second = local.run(retrain_config(cfg))
    return cfg, [first, second]


# --- Spans, continuous training and fault cases ---------------------------------------------

SPAN_ROWS = 3000
# New spans may be a little worse than the served model and still be pushed: these tests are
# about windows, warm start and faults, not about the (noisy) comparison on 1,000 eval rows.
CT_THRESHOLDS = configs.EvalThresholds(min_auc=0.85, min_accuracy=0.8, max_auc_regression=0.05, max_accuracy_regression=0.05)


def raw_frame():
    """The bundled CSV as text, exactly as written (no type guessing, empty cells stay empty)."""
    import pandas as pd

    return pd.read_csv(DATA_CSV, dtype=str, keep_default_na=False)


def span_rows(span: int):
    """Span N of the test spans: rows (N-1)*3000 .. N*3000 of the bundled data."""
    return raw_frame().iloc[(span - 1) * SPAN_ROWS: span * SPAN_ROWS]


def write_span(data_root, span: int, frame=None, text: str | None = None) -> str:
    folder = pathlib.Path(data_root) / f"span-{span}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "taxi.csv"
    if text is not None:
        path.write_text(text)
    else:
        (span_rows(span) if frame is None else frame).to_csv(path, index=False)
    return str(data_root)


def ct_config(out_dir, data_root, **overrides) -> configs.PipelineConfig:
    values = dict(train_steps=SAMPLE_STEPS, eval_steps=5, thresholds=CT_THRESHOLDS)
    values.update(overrides)
    return configs.local_config(str(out_dir), str(data_root), str(SCHEMA_PATH), **values)


def clone(cfg: configs.PipelineConfig, dest, data_root, **overrides) -> configs.PipelineConfig:
    """A copy of a finished pipeline's metadata store and served models under `dest`, for a run
    on other data. Artifacts of the original stay where they are (read, never written)."""
    out = pathlib.Path(dest) / "out"
    out.mkdir(parents=True)
    shutil.copy(cfg.metadata_uri, out / "metadata.sqlite")
    shutil.copytree(cfg.serving_model_dir, out / "serving")
    values = dict(train_steps=cfg.train_steps, eval_steps=cfg.eval_steps, thresholds=cfg.thresholds)
    values.update(overrides)
    return configs.local_config(str(out), str(data_root), str(SCHEMA_PATH), **values)


@pytest.fixture(scope="session")
def ct_base(tmp_path_factory):
    """Span 1 ingested, trained, blessed and pushed: (config, summary)."""
    root = tmp_path_factory.mktemp("ct_base")
    cfg = ct_config(root / "out", write_span(root / "data", 1))
    return cfg, local.run(cfg)


@pytest.fixture(scope="session")
def ct_history(ct_base, tmp_path_factory):
    """Then span 2 arrives: (config, [span 1 summary, span 2 summary])."""
    base_cfg, first = ct_base
    root = tmp_path_factory.mktemp("ct_history")
    data = write_span(root / "data", 1)
    write_span(data, 2)
    cfg = clone(base_cfg, root, data)
    return cfg, [first, local.run(cfg)]
