"""Rollback: serve an earlier pushed model again, and record it in the pipeline's metadata.

The served model is read in one place, `lineage.served` (the newest push; a rollback is a
push), whichever store and serving target:

* **A serving folder** (local runs): servers load the highest version number (TF Serving's
  policy, and ours), so the earlier version is copied to a new, higher version: the history
  of what was served stays in the folder, and a running server swaps to it like to any push.
* **A Vertex AI endpoint** (production): the traffic moves back to the earlier model, deployed
  again from the Model Registry (with the Pusher's machine settings) if it was undeployed;
  deployments left without traffic are undeployed, as after a push.

Either way the rollback is an execution of component `rollback` in a run of its own (so `runs`
lists it) that reads the earlier PushedModel and Model and writes a new PushedModel, plus a
Model and a ModelBlessing for the same files, so that the next candidate is evaluated against
the rolled-back model rather than the one that was rolled back.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from ops.queries import Metadata
from pipeline import lineage
from pipeline.metadata_backends import NewArtifact


class RollbackError(ValueError):
    """The rollback cannot be done as asked; nothing was changed."""


def plan(md: Metadata, to: str | None = None) -> tuple[lineage.Artifact, lineage.Artifact]:
    """(the served push, the push to serve again): by default the newest push of another
    version than the served one."""
    pushed = md.pushed_models()
    if not pushed:
        raise RollbackError(f"no pushed model of pipeline {md.pipeline_name!r}: nothing to roll back")
    served = pushed[0]
    current = lineage.pushed_version(served)
    versions = list(dict.fromkeys(lineage.pushed_version(p) for p in pushed))
    if to is None:
        earlier = [p for p in pushed if lineage.pushed_version(p) != current]
        if not earlier:
            raise RollbackError(f"only one version ({current}) has been pushed; nothing to roll back to")
        return served, earlier[0]
    to = str(to)
    if to == current:
        raise RollbackError(f"version {to} is already the served one")
    target = next((p for p in pushed if lineage.pushed_version(p) == to), None)
    if target is None:
        raise RollbackError(f"--to {to}: no such pushed version (have {', '.join(v or '?' for v in versions)})")
    return served, target


def _record(md: Metadata, served: lineage.Artifact, target: lineage.Artifact, pushed: NewArtifact) -> dict[str, Any]:
    model = md.model_of(target)
    model_out = NewArtifact("Model", model.uri, **{lineage.ROLLBACK_OF: model.uri})
    blessing = NewArtifact("ModelBlessing", model.uri, blessed=1, rollback=1, **{lineage.CURRENT_MODEL_URI: model.uri})
    run_name, written = md.backend.record(
        lineage.ROLLBACK,
        inputs={"pushed_model": [target], "model": [model]},
        outputs={"model": [model_out], "blessing": [blessing], "pushed_model": [pushed]},
        properties={
            "from_version": lineage.pushed_version(served) or "",
            "to_version": lineage.pushed_version(target) or "",
        },
    )
    md.refresh()
    return {"run_id": run_name, "pushed": written["pushed_model"][0]}


def rollback_folder(md: Metadata, serving_dir: str, to: str | None = None) -> dict[str, Any]:
    """Copies the earlier version (default: the one before the served one) to a new version
    under `serving_dir` and records the rollback. Returns what was done."""
    served, target = plan(md, to)
    current, earlier = lineage.pushed_version(served), lineage.pushed_version(target)
    source = os.path.join(serving_dir, str(earlier))
    if not os.path.isdir(source):
        raise RollbackError(f"version {earlier} is recorded as pushed but {source} is not there")
    versions = lineage.serving_versions(serving_dir)
    new_version = max(int(time.time()), (versions[-1] if versions else 0) + 1)
    target_dir = os.path.join(serving_dir, str(new_version))
    staging = os.path.join(serving_dir, f".rollback-{new_version}")
    shutil.copytree(source, staging)
    os.rename(staging, target_dir)  # atomic: a server never sees a half-copied version
    try:
        done = _record(
            md,
            served,
            target,
            NewArtifact(
                "PushedModel",
                target_dir,
                pushed=1,
                pushed_version=str(new_version),
                pushed_destination=target_dir,
                rollback_of_version=str(earlier),
            ),
        )
    except Exception:
        shutil.rmtree(target_dir, ignore_errors=True)  # the store is unchanged: undo the copy too
        raise
    return {
        "served_before": current,
        "rolled_back_to": earlier,
        "new_version": str(new_version),
        "path": target_dir,
        "run_id": done["run_id"],
    }


def _serving_args(md: Metadata, target: lineage.Artifact) -> dict[str, Any]:
    """The Vertex Pusher's settings (endpoint, machines, region) from the push being restored."""
    g = md.graph
    pusher = g.producer(target)
    while pusher is not None and pusher.component == lineage.ROLLBACK:
        earlier = g.input_artifacts(pusher, "PushedModel")
        pusher = g.producer(earlier[0]) if earlier else None
    config = json.loads(pusher.props.get("custom_config") or "{}") if pusher is not None else {}
    if "ai_platform_serving_args" not in config:
        raise RollbackError("the push being restored records no Vertex AI endpoint settings (was it pushed to an endpoint?)")
    return config


def rollback_endpoint(md: Metadata, to: str | None = None) -> dict[str, Any]:
    """Moves the traffic of the pipeline's Vertex AI endpoint back to an earlier pushed model
    (deploying it again if it was undeployed) and records the rollback."""
    from google.cloud import aiplatform

    from pipeline import vertex_pusher

    served, target = plan(md, to)
    model_name = str(target.get("pushed_destination"))
    config = _serving_args(md, target)
    args = config["ai_platform_serving_args"]
    aiplatform.init(project=args["project_id"], location=config["ai_platform_vertex_region"])
    endpoints = aiplatform.Endpoint.list(filter=f'display_name="{args["endpoint_name"]}"')
    if not endpoints:
        raise RollbackError(f"no Vertex AI endpoint named {args['endpoint_name']!r} in {config['ai_platform_vertex_region']}")
    endpoint = endpoints[0]
    deployed = [d for d in endpoint.gca_resource.deployed_models if d.model == model_name]
    if deployed:
        endpoint.update(
            traffic_split={d.id: (100 if d.id == deployed[0].id else 0) for d in endpoint.gca_resource.deployed_models}
        )
        how = "traffic moved back"
    else:
        aiplatform.Model(model_name).deploy(
            endpoint=endpoint,
            traffic_percentage=100,
            machine_type=args.get("machine_type"),
            min_replica_count=args.get("min_replica_count", 1),
            max_replica_count=args.get("max_replica_count", 1),
        )
        how = "deployed again from the Model Registry"
    undeployed = vertex_pusher.undeploy_idle(config, model_name)
    done = _record(
        md,
        served,
        target,
        NewArtifact(
            "PushedModel",
            model_name,
            pushed=1,
            pushed_destination=model_name,
            rollback_of_version=lineage.pushed_version(target) or "",
            undeployed=",".join(undeployed),
        ),
    )
    return {
        "served_before": lineage.pushed_version(served),
        "rolled_back_to": lineage.pushed_version(target),
        "new_version": lineage.pushed_version(done["pushed"]),
        "endpoint": endpoint.resource_name,
        "how": how,
        "run_id": done["run_id"],
    }
