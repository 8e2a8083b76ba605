"""The Vertex AI Pusher with a traffic policy: no idle deployment is left running.

TFX's Vertex Pusher uploads the blessed model and deploys it to the endpoint, and never
undeploys anything: after N pushes the endpoint has N deployments, each with its replicas
running and billing. After a push, this executor undeploys every deployment on the endpoint
that receives no traffic, except the one just made.

With traffic_percentage 100 (the default) the new model takes all traffic and the one it
replaces is undeployed. With a canary (e.g. 10), the previous model keeps its 90% and stays;
any older, idle deployment goes. Models stay in the Model Registry, so a rollback redeploys one.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tfx.extensions.google_cloud_ai_platform import constants
from tfx.extensions.google_cloud_ai_platform.pusher import executor as vertex_pusher
from tfx.types import artifact_utils, standard_component_specs

logger = logging.getLogger(__name__)


def idle_deployments(endpoint: Any, keep_model: str) -> list[str]:
    """IDs of an endpoint's (aiplatform_v1.Endpoint) deployed models that receive no traffic,
    except those of `keep_model` (the model resource just pushed)."""
    split = dict(endpoint.traffic_split)
    return [d.id for d in endpoint.deployed_models if not split.get(d.id) and d.model != keep_model]


def undeploy_idle(custom_config: dict[str, Any], model_resource: str) -> list[str]:
    """Undeploys the idle deployments of the configured endpoint; returns their IDs."""
    from google.cloud import aiplatform

    args = custom_config[constants.SERVING_ARGS_KEY]
    aiplatform.init(project=args["project_id"], location=custom_config[constants.VERTEX_REGION_KEY])
    gone = []
    for endpoint in aiplatform.Endpoint.list(filter=f'display_name="{args["endpoint_name"]}"'):
        for deployed_id in idle_deployments(endpoint.gca_resource, model_resource):
            logger.info("undeploying idle deployment %s from %s", deployed_id, endpoint.resource_name)
            endpoint.undeploy(deployed_id)
            gone.append(deployed_id)
    return gone


class Executor(vertex_pusher.Executor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        pushed = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if pushed.get_int_custom_property("pushed"):
            config = json.loads(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY])
            gone = undeploy_idle(config, pushed.get_string_custom_property("pushed_destination"))
            pushed.set_string_custom_property("undeployed", ",".join(gone))
