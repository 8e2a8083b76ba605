"""Progress lines of a local run, read from a real ML Metadata store while it is written."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from runners.progress import Progress

PIPELINE = "taxi-big-tipper"
ROOT = Path(__file__).resolve().parents[1]


def store(path) -> metadata_store.MetadataStore:
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def start_execution(db, run_ctx, pipeline_ctx, component: str) -> pb.Execution:
    """An execution of `component` in the run, RUNNING, as TFX records one."""
    node = pb.Context(type_id=db.put_context_type(pb.ContextType(name="node")), name=f"{PIPELINE}.{component}")
    execution = pb.Execution(
        type_id=db.put_execution_type(pb.ExecutionType(name=component)), last_known_state=pb.Execution.RUNNING
    )
    execution_id, _, _ = db.put_execution(execution, [], [pipeline_ctx, run_ctx, node], reuse_context_if_already_exist=True)
    execution.id = execution_id
    return execution


def wait_for(out: io.StringIO, text: str, timeout: float = 10) -> None:
    deadline = time.time() + timeout
    while text not in out.getvalue():
        assert time.time() < deadline, out.getvalue()
        time.sleep(0.05)


def test_a_line_per_component_start_and_end_and_one_while_it_works(tmp_path):
    path = tmp_path / "metadata.sqlite"
    db = store(path)
    pipeline_ctx = pb.Context(type_id=db.put_context_type(pb.ContextType(name="pipeline")), name=PIPELINE)
    [pipeline_ctx.id] = db.put_contexts([pipeline_ctx])
    out = io.StringIO()
    with Progress(str(path), PIPELINE, out=out, every=0.5, poll=0.05):
        run_ctx = pb.Context(type_id=db.put_context_type(pb.ContextType(name="pipeline_run")), name="run-1")
        [run_ctx.id] = db.put_contexts([run_ctx])
        db.put_parent_contexts([pb.ParentContext(child_id=run_ctx.id, parent_id=pipeline_ctx.id)])
        transform = start_execution(db, run_ctx, pipeline_ctx, "transform")
        wait_for(out, "transform started")
        wait_for(out, "transform running")  # nothing happened for `every` seconds: a line anyway
        transform.last_known_state = pb.Execution.COMPLETE
        db.put_executions([transform])
        wait_for(out, "transform ran (")
        cached = start_execution(db, run_ctx, pipeline_ctx, "trainer")
        cached.last_known_state = pb.Execution.CACHED
        db.put_executions([cached])
    lines = out.getvalue().splitlines()
    assert all(re.match(r"^progress \[\s*[\d.]+s\] ", line) for line in lines), lines
    assert lines[0].endswith("running the pipeline (component lines follow as ML Metadata records them)")
    assert any(line.endswith(("trainer cached (0.0 s)", "trainer started")) for line in lines)
    assert "trainer cached (" in out.getvalue()


def test_opening_stores_on_two_threads_never_loses_stderr(tmp_path):
    """Opening a store sends fd 2 to a temporary file for a moment (to read the database
    client's reason for a failed connection). The progress thread opens one (at its first poll,
    and again after a failed read) while the pipeline's own executors open theirs: stderr must
    stay the terminal's, and no progress line may land in another thread's capture."""
    path = tmp_path / "metadata.sqlite"
    db = store(path)
    db.put_contexts([pb.Context(type_id=db.put_context_type(pb.ContextType(name="pipeline")), name=PIPELINE)])
    script = f"""
import sys
from pipeline import stores
from runners.progress import Progress
with Progress({str(path)!r}, {PIPELINE!r}, every=0.002, poll=0.001):
    for _ in range(300):
        stores.open_store({str(path)!r})
print("still on stderr", file=sys.stderr, flush=True)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.rstrip().endswith("still on stderr"), done.stderr[-2000:]
    heartbeats = [line for line in done.stderr.splitlines() if line.startswith("progress [")]
    assert len(heartbeats) > 20, done.stderr[-2000:]
