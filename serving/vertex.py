"""The Vertex AI custom serving container's entrypoint: the same server as `runner.py serve`.

A Vertex endpoint serves this project's own server, so a client written against `runner.py
serve` (the README's request body, nulls for missing values) works unchanged against the
endpoint. Vertex starts the container with:

  AIP_HTTP_PORT       the port to listen on (8080)
  AIP_PREDICT_ROUTE   the path it forwards predict requests to
  AIP_HEALTH_ROUTE    the path it polls for health (200 once the model is loaded)
  AIP_STORAGE_URI     a gs:// copy of the uploaded model: one SavedModel, read with tf.io.gfile

  python -m serving.vertex      (the ENTRYPOINT of the Dockerfile's `serving` target)
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping

from serving.server import ServerConfig, serve

REQUIRED = ("AIP_HTTP_PORT", "AIP_PREDICT_ROUTE", "AIP_HEALTH_ROUTE", "AIP_STORAGE_URI")


class ContainerEnvError(ValueError):
    """The container was started without what Vertex provides; the message names it."""


def config_from_env(env: Mapping[str, str]) -> ServerConfig:
    """The server's configuration from Vertex's environment variables."""
    missing = [name for name in REQUIRED if not env.get(name)]
    if missing:
        raise ContainerEnvError(f"{missing[0]} is not set (Vertex AI sets {', '.join(REQUIRED)})")
    try:
        port = int(env["AIP_HTTP_PORT"])
    except ValueError:
        raise ContainerEnvError(f"AIP_HTTP_PORT is not a port number: {env['AIP_HTTP_PORT']!r}") from None
    # The deployed model's id names the version in responses and logs (digits only, as
    # TF Serving's versions are).
    version = int(re.sub(r"\D", "", env.get("AIP_DEPLOYED_MODEL_ID", "")) or 1)
    return ServerConfig(
        model_dir=env["AIP_STORAGE_URI"],
        model_name=env.get("MODEL_NAME", "taxi"),
        host="0.0.0.0",  # noqa: S104 - inside the container, Vertex's proxy connects from outside it
        port=port,
        single_model_version=version,
        predict_route=env["AIP_PREDICT_ROUTE"],
        health_route=env["AIP_HEALTH_ROUTE"],
        # The model in a deployment never changes: nothing to poll for.
        poll_seconds=3600.0,
    )


def main() -> int:
    from serving.logs import JsonFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    try:
        cfg = config_from_env(os.environ)
    except ContainerEnvError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    serve(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
