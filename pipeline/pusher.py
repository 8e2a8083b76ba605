"""A Pusher executor that does not push the same model twice.

An unchanged re-run reuses the cached model, but its Evaluator runs again (its baseline is now
that same model) and blesses it, so the stock Pusher would copy an identical model to a new
version directory on every run. This executor compares the model with the newest version
already pushed and, when they are byte-identical, records that version as the push instead.
"""

from __future__ import annotations

import hashlib
import logging
import os

from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from pipeline import lineage

logger = logging.getLogger(__name__)


def _digest(model_dir: str) -> str:
    digest = hashlib.sha256()
    for root, _, files in sorted(fileio.walk(model_dir)):
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, model_dir).encode())
            with fileio.open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def newest_version_dir(base_directory: str) -> str | None:
    versions = lineage.serving_versions(base_directory)
    return os.path.join(base_directory, str(versions[-1])) if versions else None


class Executor(pusher_executor.Executor):
    """TFX's Pusher executor, made idempotent for filesystem destinations."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        if self.CheckBlessing(input_dict):
            destination = pusher_pb2.PushDestination()
            proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
            if destination.WhichOneof("destination") == "filesystem":
                model_path = self.GetModelPath(input_dict)
                newest = newest_version_dir(destination.filesystem.base_directory)
                if newest and _digest(model_path) == _digest(newest):
                    model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
                    io_utils.copy_dir(model_path, model_push.uri)
                    self._MarkPushed(model_push, pushed_destination=newest, pushed_version=os.path.basename(newest))
                    logger.info("model identical to the served version %s: not pushed again", newest)
                    return
        super().Do(input_dict, output_dict, exec_properties)
