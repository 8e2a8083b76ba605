"""Rollback: make an earlier pushed model the served one again, and record it in ML Metadata.

Servers load the highest version number under the serving directory (TF Serving's policy, and
ours), so a rollback pushes a copy of the earlier version as a new, higher version: the
history of what was served stays in the directory, and a running server swaps to it like to
any push. In ML Metadata the rollback is an execution in its own pipeline run (so `runs`
lists it) that takes the earlier PushedModel and Model as inputs and outputs a new
PushedModel, plus a Model and ModelBlessing for the same files, so the next candidate is
evaluated against the rolled-back model rather than the one that was rolled back.
"""

from __future__ import annotations

import datetime
import os
import shutil
import time
from typing import Any

from ml_metadata.proto import metadata_store_pb2 as pb

from ops.queries import Metadata
from ops.store import open_store
from pipeline import lineage

EXECUTION_TYPE = "Rollback"
NODE = "rollback"


class RollbackError(ValueError):
    """The rollback cannot be done as asked; nothing was changed."""


def plan(md: Metadata, serving_dir: str, to: int | None = None) -> tuple[int, int]:
    """(currently served version, version to roll back to)."""
    versions = lineage.serving_versions(serving_dir)
    if not versions:
        raise RollbackError(f"no pushed model under {serving_dir}")
    current = versions[-1]
    if to is None:
        if len(versions) < 2:
            raise RollbackError(f"only one version ({current}) under {serving_dir}; nothing to roll back to")
        to = versions[-2]
    if to not in versions:
        raise RollbackError(f"--to {to}: no such version under {serving_dir} (have {', '.join(map(str, versions))})")
    if to == current:
        raise RollbackError(f"version {to} is already the served one")
    return current, to


def rollback(metadata_uri: str, pipeline_name: str, serving_dir: str, to: int | None = None) -> dict[str, Any]:
    """Copies version `to` (default: the one before the served one) to a new version and
    records the rollback. Returns what was done."""
    store = open_store(metadata_uri, read_only=False)
    md = Metadata(store, pipeline_name)
    current, to = plan(md, serving_dir, to)
    old_pushed = md.resolve(str(to))
    old_model = md.model_of(old_pushed)

    new_version = max(int(time.time()), current + 1)
    target = os.path.join(serving_dir, str(new_version))
    staging = os.path.join(serving_dir, f".rollback-{new_version}")
    shutil.copytree(os.path.join(serving_dir, str(to)), staging)
    os.rename(staging, target)  # atomic: a server never sees a half-copied version
    try:
        execution_id = _record(store, md, old_pushed, old_model, current, to, new_version, target)
    except Exception:
        shutil.rmtree(target, ignore_errors=True)  # the store is unchanged: undo the copy too
        raise
    return {
        "served_before": current,
        "rolled_back_to": to,
        "new_version": new_version,
        "path": target,
        "execution_id": execution_id,
    }


def _artifact(store, type_name: str, uri: str, **props) -> pb.Artifact:
    artifact = pb.Artifact(type_id=store.get_artifact_type(type_name).id, uri=uri, state=pb.Artifact.LIVE)
    for key, value in props.items():
        if isinstance(value, int):
            artifact.custom_properties[key].int_value = value
        else:
            artifact.custom_properties[key].string_value = str(value)
    return artifact


def _event(kind: int, key: str) -> pb.Event:
    event = pb.Event(type=kind)
    event.path.steps.add().key = key
    event.path.steps.add().index = 0
    return event


def _record(store, md: Metadata, old_pushed, old_model, current: int, to: int, new_version: int, target: str) -> int:
    execution_type = pb.ExecutionType(name=EXECUTION_TYPE)
    for name in ("from_version", "to_version", "new_version"):
        execution_type.properties[name] = pb.INT
    type_id = store.put_execution_type(execution_type)
    execution = pb.Execution(type_id=type_id, last_known_state=pb.Execution.COMPLETE)
    execution.properties["from_version"].int_value = current
    execution.properties["to_version"].int_value = to
    execution.properties["new_version"].int_value = new_version

    model = _artifact(store, "Model", old_model.uri, rollback_of=old_model.id)
    [model_id] = store.put_artifacts([model])
    model.id = model_id
    blessing = _artifact(
        store, "ModelBlessing", old_model.uri, blessed=1, current_model_id=model_id, current_model=old_model.uri, rollback=1
    )
    pushed = _artifact(
        store,
        "PushedModel",
        target,
        pushed=1,
        pushed_version=str(new_version),
        pushed_destination=target,
        rollback_of_version=str(to),
    )

    pipeline_ctx = store.get_context_by_type_and_name("pipeline", md.pipeline_name)
    run_name = f"rollback-{datetime.datetime.now().isoformat()}"
    run_ctx = pb.Context(type_id=store.get_context_type("pipeline_run").id, name=run_name)
    node_name = f"{md.pipeline_name}.{NODE}"
    node_ctx = store.get_context_by_type_and_name("node", node_name) or pb.Context(
        type_id=store.get_context_type("node").id, name=node_name
    )
    execution_id, _, context_ids = store.put_execution(
        execution,
        [
            (old_pushed, _event(pb.Event.INPUT, "pushed_model")),
            (old_model, _event(pb.Event.INPUT, "model")),
            (model, _event(pb.Event.OUTPUT, "model")),
            (blessing, _event(pb.Event.OUTPUT, "blessing")),
            (pushed, _event(pb.Event.OUTPUT, "pushed_model")),
        ],
        [pipeline_ctx, run_ctx, node_ctx],
        reuse_context_if_already_exist=True,
    )
    store.put_parent_contexts([pb.ParentContext(child_id=context_ids[1], parent_id=pipeline_ctx.id)])
    return execution_id
