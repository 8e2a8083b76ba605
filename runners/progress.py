"""Progress of a local run on stderr: a line per component as it starts and ends, and a line
at least every `every` seconds while one works, read from ML Metadata as the run records it.

  progress [  14.2s] transform started
  progress [  24.2s] transform running (10 s)
  progress [  31.0s] transform ran (16.8 s)
  progress [  31.1s] trainer started

Imports ml-metadata only; a read that meets the run's own write lock is skipped, not fatal.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline import stores as mlmd_store

_DONE = {
    pb.Execution.COMPLETE: "ran",
    pb.Execution.CACHED: "cached",
    pb.Execution.FAILED: "failed",
    pb.Execution.CANCELED: "canceled",
}


class Progress:
    """Use as a context manager around the run."""

    def __init__(
        self,
        metadata_uri: str,
        pipeline_name: str,
        out: IO[str] | None = None,
        every: float = 10.0,
        poll: float = 1.0,
        since: float | None = None,
    ):
        self.metadata_uri = metadata_uri
        self.pipeline_name = pipeline_name
        self.out = out or sys.stderr
        self.every = every
        self.poll = poll
        self.start = since if since is not None else time.monotonic()  # the command's start
        self.start_ms = int(time.time() * 1000)
        self.last_line = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self._seen: dict[int, str] = {}
        self._names: dict[int, str] = {}
        self._started: dict[int, float] = {}
        self._store: metadata_store.MetadataStore | None = None  # opened once, not every poll

    def say(self, text: str) -> None:
        now = time.monotonic()
        with mlmd_store.STDERR_LOCK:  # not into another thread's capture of fd 2
            print(f"progress [{now - self.start:6.1f}s] {text}", file=self.out, flush=True)
        self.last_line = now

    def __enter__(self) -> Progress:
        self.say("running the pipeline (component lines follow as ML Metadata records them)")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._report()  # what finished since the last poll

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            self._report()
            if time.monotonic() - self.last_line >= self.every:
                running = [name for name, state in self._seen.items() if state == "running"]
                what = ", ".join(f"{self._names[i]} running ({time.monotonic() - self._started[i]:.0f} s)" for i in running)
                # Nothing seen yet: TensorFlow and TFX are loading (`local.run` imports them here).
                self.say(what or ("starting components" if self._seen else "loading TFX, building the pipeline"))

    def _report(self) -> None:
        try:
            executions = self._executions()
        except Exception:  # noqa: BLE001 - the run holds a write lock, or the store is not there yet
            self._store = None  # opened again at the next poll
            return
        for execution, name in executions:
            state = _DONE.get(execution.last_known_state, "running")
            previous = self._seen.get(execution.id)
            if previous == state:
                continue
            self._names[execution.id] = name
            if previous is None:
                self._started[execution.id] = time.monotonic()
                if state == "running":
                    self.say(f"{name} started")
            if state != "running":
                seconds = (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000
                self.say(f"{name} {state} ({seconds:.1f} s)")
            self._seen[execution.id] = state

    def _executions(self) -> list[tuple[pb.Execution, str]]:
        # Only the newest run, polled every second: straight from the store, not the whole
        # pipeline's lineage graph. The connection is kept between polls (opening a store
        # checks its schema: ~30 ms of a core, every second, beside the run).
        if self._store is None:
            self._store = mlmd_store.open_store(self.metadata_uri)
        store = self._store
        ctx = store.get_context_by_type_and_name("pipeline", self.pipeline_name)
        if ctx is None:
            return []
        runs = [
            c
            for c in store.get_children_contexts_by_context(ctx.id)
            if c.type == "pipeline_run" and c.create_time_since_epoch >= self.start_ms - 1000
        ]
        if not runs:
            return []
        run = max(runs, key=lambda c: c.create_time_since_epoch)
        executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
        prefix = self.pipeline_name + "."

        def component(execution_id: int) -> str:
            nodes = [c.name for c in store.get_contexts_by_execution(execution_id) if c.type == "node"]
            return next((n[len(prefix) :] for n in nodes if n.startswith(prefix)), "?")

        return [(e, component(e.id)) for e in executions]
