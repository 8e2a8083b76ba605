"""Fixtures for end-to-end tests: one shared story of real pipeline runs, and a MariaDB server.

The story is what a production pipeline lives through, in one metadata store, each step a
session fixture that builds on the one before (so each runs once, whichever test asks first):

  s1_first        span 1 arrives: trained, blessed, pushed (version 1)
  s2_rerun        the same data again: every component is a cache hit
  s3_span2        span 2 arrives (other learning rate): window {1, 2}, warm start, pushed (v2)
  s5_drift        span 3 with drifted payment types and hours: rejected at the gate
  s5_fare_shift   span 3 again with every fare x10 + 40: rejected (fare, and the label)
  s5_bad_files    span 3 again: a byte-order mark, the same file twice, repeated rows
  s5_blind_spots  span 3 again: fare and tips doubled, the drop-off emptied, trips 50 years
                  ahead: rejected, naming each
  s5_semicolons   span 3 again, ;-delimited, through the CLI: refused before ExampleGen parses
  s5_text_numbers span 3 again with "n/a" in the fare, through the CLI: the table, exit 3
  s6_removed      span 3's folder removed: the re-run is all cache hits again
  s7_redelivered  span 2 re-delivered with bad rows: rejected, naming every problem
  s8_empty        span 3 arrives with a header and no rows: rejected (EMPTY_DATA)
  s9_span3        span 3 arrives good, through the CLI: killed while training (a second run
                  meanwhile is refused the store), then re-run to completion
  s10_accepted    span 4 drifts, and the operator accepts it: trained (on span 4 alone, one
                  step from scratch: far worse than the served model), on record; not
                  blessed, nothing pushed

Each step leaves a copy of the store as it was right after it (`Step.store`), so a test of
"after span 2" is not disturbed by the steps after it. Artifacts are never deleted, so the
copies' URIs stay valid.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from helpers import DATA_CSV, ROOT, SCHEMA_PATH, bad_rows, drifted, free_port, snapshot, span_rows, write_span
from modules.hparams import HParams
from ops import queries
from pipeline import configs, lineage, stores
from pipeline import pipeline as P
from pipeline.validation import DataValidationError
from runners import local

# Short training with a validation every 100 steps: 250 is not a multiple of 100, so a run that
# rounded steps up to whole "epochs" would train 300.
STEPS = 250
HPARAMS = HParams(steps_per_eval=100)
# 2,000 training rows: a lower bar than the full data's, still far above chance. A new span's
# model may be a little worse than the served one and still be pushed: these tests are about
# windows, warm start and faults, not about the (noisy) comparison on 1,000 eval rows.
THRESHOLDS = configs.EvalThresholds(
    min_auc=0.85,
    min_accuracy=0.8,
    max_auc_regression=0.05,
    max_accuracy_regression=0.05,
    slice_min_auc=0.5,
    slice_max_auc_regression=0.1,
)


# --- The story -------------------------------------------------------------------------------


@dataclasses.dataclass
class Step:
    """One step of the story: its config, what the run returned (summary, or the gate's
    rejection), and a copy of the store right after it."""

    cfg: configs.PipelineConfig
    summary: dict | None
    store: str
    rejected: DataValidationError | None = None
    before: dict | None = None  # snapshot of records and served files before the step
    extra: dict = dataclasses.field(default_factory=dict)

    def metadata(self) -> queries.Metadata:
        return queries.open_metadata(self.store, self.cfg.pipeline_name)


class Story:
    def __init__(self, root: pathlib.Path):
        self.root = root
        self.data = root / "data"
        self.out = root / "out"
        self.snapshots = root / "snapshots"
        self.snapshots.mkdir(parents=True)
        self.cfg: configs.PipelineConfig | None = None

    def config(self, **overrides) -> configs.PipelineConfig:
        values = dict(train_steps=STEPS, eval_steps=5, thresholds=THRESHOLDS, hparams=HPARAMS)
        values.update(overrides)
        return configs.local_config(str(self.out), str(self.data), str(SCHEMA_PATH), **values)

    def keep(self, name: str, cfg, summary=None, rejected=None, before=None, **extra) -> Step:
        copy = self.snapshots / f"{name}.sqlite"
        shutil.copy(cfg.metadata_uri, copy)
        return Step(cfg, summary, str(copy), rejected, before, extra)

    def run(self, name: str, cfg) -> Step:
        before = snapshot(cfg) if os.path.exists(cfg.metadata_uri) else None
        return self.keep(name, cfg, local.run(cfg), before=before)

    def reject(self, name: str, cfg) -> Step:
        before = snapshot(cfg)
        with pytest.raises(DataValidationError) as failure:
            local.run(cfg)
        return self.keep(name, cfg, rejected=failure.value, before=before)


@pytest.fixture(scope="session")
def story(tmp_path_factory) -> Story:
    return Story(tmp_path_factory.mktemp("story"))


@pytest.fixture(scope="session")
def s1_first(story) -> Step:
    write_span(story.data, 1)
    return story.run("s1", story.config())


@pytest.fixture(scope="session")
def s2_rerun(story, s1_first) -> Step:
    return story.run("s2", s1_first.cfg)


LR_SPAN2 = 0.001


def s3_span2_cfg(story: Story) -> configs.PipelineConfig:
    """Span 2's configuration: what an unchanged daily run uses from then on."""
    return story.config(hparams=HPARAMS.replace(learning_rate=LR_SPAN2))


@pytest.fixture(scope="session")
def s3_span2(story, s2_rerun) -> Step:
    write_span(story.data, 2)
    return story.run("s3", s3_span2_cfg(story))


@pytest.fixture(scope="session")
def s5_drift(story, s3_span2) -> Step:
    write_span(story.data, 3, frame=drifted(3))
    return story.reject("s5", s3_span2_cfg(story))


@pytest.fixture(scope="session")
def s5_fare_shift(story, s5_drift) -> Step:
    """Span 3 re-delivered with every fare x10 + 40 (mean 11.8 -> 169): the big-tipper rate
    falls from ~23% to almost nothing."""
    frame = span_rows(3)
    fare = frame["fare"].astype(float) * 10 + 40
    write_span(story.data, 3, frame=frame.assign(fare=fare.round(2).astype(str)))
    return story.reject("s5b", s3_span2_cfg(story))


@pytest.fixture(scope="session")
def s5_bad_files(story, s5_fare_shift) -> Step:
    """Span 3 re-delivered as two copies of one file that starts with a byte-order mark and
    repeats 40% of its rows."""
    import pandas as pd

    rows = span_rows(3).iloc[:1800]
    text = "\ufeff" + pd.concat([rows, rows.iloc[:1200]]).to_csv(index=False)  # 1,200 of 3,000 rows repeat
    folder = write_span(story.data, 3, text=text)
    (pathlib.Path(folder) / "span-3" / "taxi_copy.csv").write_text(text, encoding="utf-8")
    # Through the CLI, as an operator meets it: the exit code and the table on stderr.
    cfg = s3_span2_cfg(story)
    before = snapshot(cfg)
    proc = cli_run(cfg)
    out, err = proc.communicate(timeout=600)
    return story.keep("s5c", cfg, before=before, exit_code=proc.returncode, stdout=out, stderr=err)


def blind_spots(span: int):
    """Span N with three changes the schema allows: a price rise (fare and tips x2, labels
    unchanged), the drop-off emptied out (optional features), and every trip 50 years ahead."""
    import pandas as pd

    frame = span_rows(span)
    fare, tips = (pd.to_numeric(frame[c], errors="coerce") * 2 for c in ("fare", "tips"))
    ahead = pd.to_numeric(frame["trip_start_timestamp"]) + 50 * 365 * 86400
    emptied = {c: "" for c in ("dropoff_latitude", "dropoff_longitude", "dropoff_community_area", "dropoff_census_tract")}
    return frame.assign(
        fare=fare.round(2).astype(str), tips=tips.round(2).astype(str), trip_start_timestamp=ahead.astype(str), **emptied
    )


@pytest.fixture(scope="session")
def s5_blind_spots(story, s5_bad_files) -> Step:
    write_span(story.data, 3, frame=blind_spots(3))
    return story.reject("s5d", s3_span2_cfg(story))


def cli_step(story: Story, name: str, cfg) -> Step:
    before = snapshot(cfg)
    proc = cli_run(cfg)
    out, err = proc.communicate(timeout=600)
    return story.keep(name, cfg, before=before, exit_code=proc.returncode, stdout=out, stderr=err)


@pytest.fixture(scope="session")
def s5_semicolons(story, s5_blind_spots) -> Step:
    write_span(story.data, 3, text=span_rows(3).to_csv(index=False, sep=";"))
    return cli_step(story, "s5e", s3_span2_cfg(story))


@pytest.fixture(scope="session")
def s5_text_numbers(story, s5_semicolons) -> Step:
    frame = span_rows(3)
    frame.loc[frame.index[::3], "fare"] = "n/a"
    write_span(story.data, 3, frame=frame)
    return cli_step(story, "s5f", s3_span2_cfg(story))


@pytest.fixture(scope="session")
def s6_removed(story, s5_text_numbers) -> Step:
    shutil.rmtree(story.data / "span-3")
    return story.run("s6", s3_span2_cfg(story))


@pytest.fixture(scope="session")
def s7_redelivered(story, s6_removed) -> Step:
    write_span(story.data, 2, frame=bad_rows(2))
    return story.reject("s7", s3_span2_cfg(story))


@pytest.fixture(scope="session")
def s8_empty(story, s7_redelivered) -> Step:
    write_span(story.data, 3, text=",".join(span_rows(3).columns) + "\n")
    return story.reject("s8", s3_span2_cfg(story))


def cli_run(cfg: configs.PipelineConfig, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "runner.py"),
            "run",
            "--data",
            cfg.data_root,
            "--schema",
            str(SCHEMA_PATH),
            "--output",
            os.path.dirname(cfg.metadata_uri),
            "--train-steps",
            str(cfg.train_steps),
            "--hparams",
            json.dumps(cfg.hparams.to_dict()),
            "--json",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_training(cfg: configs.PipelineConfig, proc: subprocess.Popen, timeout: float = 300) -> int:
    """Waits until the Trainer is running and has written its first summaries (it is inside
    fit); returns the Trainer's execution id."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended before training: {proc.stderr.read()[-3000:]}")
        try:
            g = queries.open_metadata(cfg.metadata_uri, cfg.pipeline_name).graph
        except stores.MetadataError:
            g = lineage.Graph(cfg.pipeline_name, [], [], [], [])
        for e in g.executions.values():
            if e.state == lineage.RUNNING and e.component == P.TRAINER:
                # Output artifacts are recorded when the execution is published; until then,
                # TFX's layout says where the TensorBoard logs go: <root>/trainer/model_run/<id>.
                if os.path.isdir(os.path.join(cfg.pipeline_root, P.TRAINER, "model_run", str(e.id), "train")):
                    return e.id
        time.sleep(0.3)
    pytest.fail("the Trainer never started training")


@pytest.fixture(scope="session")
def s9_span3(story, s8_empty) -> Step:
    write_span(story.data, 3)
    cfg = s3_span2_cfg(story).replace(train_steps=300)
    before = snapshot(cfg)
    first = cli_run(cfg)
    killed = wait_for_training(cfg, first)
    # A second run while the first holds the store: refused at once.
    second = cli_run(cfg)
    out2, err2 = second.communicate(timeout=300)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    rerun = cli_run(cfg)
    out, err = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, err[-3000:]
    return story.keep(
        "s9",
        cfg,
        json.loads(out),
        before=before,
        killed_execution=killed,
        second=(second.returncode, out2, err2),
        rerun_stderr=err,
    )


@pytest.fixture(scope="session")
def s10_accepted(story, s9_span3) -> Step:
    write_span(story.data, 4, frame=drifted(4))
    cfg = s3_span2_cfg(story).replace(
        train_steps=1,
        hparams=HPARAMS.replace(warm_start=False),
        train_window_spans=1,
        accept_anomalies=("payment_type:COMPARATOR_L_INFTY_HIGH", "trip_start_hour"),
    )
    return story.run("s10", cfg)


# --- A clone of a step, for tests that change the store ----------------------------------------


@pytest.fixture
def clone(tmp_path):
    """clone(step): a copy of a step's store and of the served models, for a test that changes
    them; returns the step's config pointing at the copies."""

    def make(step: Step) -> configs.PipelineConfig:
        out = tmp_path / "clone"
        out.mkdir()
        shutil.copy(step.store, out / "metadata.sqlite")
        # The serving folder as it was after the step: the versions its store had pushed.
        pushed = {lineage.pushed_version(a) for a in step.metadata().pushed_models()}
        for version in pushed:
            shutil.copytree(os.path.join(step.cfg.serving_model_dir, version), out / "serving" / version)
        return step.cfg.replace(metadata_uri=str(out / "metadata.sqlite"), serving_model_dir=str(out / "serving"))

    return make


# --- The full data ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def full_data_run(tmp_path_factory):
    """The default configuration on all 15,002 rows: (config, summary)."""
    root = tmp_path_factory.mktemp("full")
    (root / "data").mkdir()
    shutil.copy(DATA_CSV, root / "data" / "taxi.csv")
    cfg = local.build_config(str(root / "out"), str(root / "data"), str(SCHEMA_PATH))
    return cfg, local.run(cfg)


# --- The CLI and a browser --------------------------------------------------------------------


@pytest.fixture
def cli(capsys):
    """runner.main in this process: (exit code, stdout, stderr)."""
    import runner

    def call(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()  # what the test printed before (Keras's progress) is not the command's
        code = runner.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return call


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Loads a page in headless Chromium (Debian's package): returns (DOM, screenshot path)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Chromium is not installed: run scripts/ensure-test-tools.sh (make test does)")
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    # Kept after the run (build/ is git-ignored): a person can look at what the test saw.
    shots = pathlib.Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
    shots.mkdir(parents=True, exist_ok=True)

    def load(html_path) -> tuple[str, pathlib.Path]:
        profile = tempfile.mkdtemp(prefix="chromium-")
        done = subprocess.run(
            [chromium, *flags, f"--user-data-dir={profile}", "--dump-dom", f"file://{html_path}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        shot = shots / (pathlib.Path(html_path).stem + ".png")
        subprocess.run(
            [
                chromium,
                *flags,
                f"--user-data-dir={profile}",
                "--window-size=1280,2400",
                f"--screenshot={shot}",
                f"file://{html_path}",
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        shutil.rmtree(profile, ignore_errors=True)
        return done.stdout, shot

    return load


# --- MariaDB ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mariadb():
    """A real MariaDB server (Debian's package) on a loopback port, for the session, with a
    user and password. Yields a URI for a database that MLMD creates on first connection.

    (Not PostgreSQL: ml-metadata 1.16's PostgreSQL backend writes strings containing a
    backslash as 'E'... , a SQL syntax error, and TFX stores JSON with escapes; see docs/.)
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
    done = subprocess.run(
        ["mariadb-install-db", f"--datadir={data}", "--auth-root-authentication-method=normal", "--skip-test-db", *user],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        pytest.fail(f"mariadb-install-db failed: {done.stderr.strip()}")
    log = open(root / "log", "w")
    proc = subprocess.Popen(
        [
            server,
            "--no-defaults",
            f"--datadir={data}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={sock}",
            f"--pid-file={root / 'pid'}",
            *user,
        ],
        stdout=log,
        stderr=log,
    )
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
