"""Cross-run inputs, resolved inside the components that use them, the same on every runner.

TFX's Vertex compiler (KubeflowV2, TFX 1.16) compiles only TFX's two built-in resolver
strategies, and those query the whole region's store. So the training window, the warm-start
model, the newest tuning and the evaluation baseline are not resolver nodes: the executors
below add them to their inputs at run time, from the facts in `pipeline/lineage.py`, read
through the store's backend (`pipeline/metadata_backends.py`: ML Metadata locally, Vertex ML
Metadata in production), scoped to this pipeline's name. The data gate finds its drift
reference the same way (pipeline/gate.py).

What each one resolved is recorded on its outputs (lineage.WINDOW, WARM_START_FROM,
HYPERPARAMETERS_FROM; TFX's Evaluator records the baseline on the blessing), so `lineage`
answers on both stores which spans trained a model, what it warm-started from and what it
was compared with.

Each component receives `lineage`, a JSON {"store": URI without secret, "pipeline": name}
(metadata_backends.scope): Transform and the Trainer in custom_config, the Evaluator and the
gate as an execution property.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator import component as evaluator_component
from tfx.components.evaluator import constants as evaluator_constants
from tfx.components.evaluator import executor as evaluator_executor
from tfx.components.trainer import executor as trainer_executor
from tfx.components.transform import executor as transform_executor
from tfx.components.tuner import executor as tuner_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter
from tfx.utils import io_utils, json_utils, proto_utils

from pipeline import beam_speed, lineage, recorded_baseline, tfma_speed
from pipeline.metadata_backends import backend_for_scope

logger = logging.getLogger(__name__)

LINEAGE_KEY = "lineage"  # the scope, in custom_config or as an execution property
WINDOW_KEY = "train_window_spans"  # Transform's custom_config: the window, in spans
ANALYZER_CACHE_KEY = "analyzer_cache"  # Transform's custom_config: reuse earlier analyses
CACHE_FROM = "analyzer_cache_from"  # recorded on Transform's outputs: the cache it read


def load_graph(scope: str) -> lineage.Graph:
    return backend_for_scope(scope).load()


def tfx_artifact(artifact: lineage.Artifact, cls: type[types.Artifact]) -> types.Artifact:
    """A TFX artifact for a recorded one: its URI and properties (declared ones as properties,
    the rest as custom properties), as the executor would have received it as an input."""
    result = cls()
    result.uri = artifact.uri
    if artifact.ref.isdigit():  # an ML Metadata id (on Vertex, a resource name)
        result.id = int(artifact.ref)
    declared = result.artifact_type.properties
    for name, value in artifact.props.items():
        if value is None:
            continue
        if name in declared:
            setattr(result, name, int(value) if declared[name] == 1 else value)  # 1: INT
        elif isinstance(value, bool) or isinstance(value, int):
            result.set_int_custom_property(name, int(value))
        elif isinstance(value, float):
            result.set_float_custom_property(name, value)
        else:
            result.set_string_custom_property(name, value if isinstance(value, str) else json.dumps(value))
    return result


def _recorded(g: lineage.Graph, artifact: types.Artifact, type_name: str) -> lineage.Artifact:
    found = g.by_uri(artifact.uri, type_name)
    if not found:
        raise RuntimeError(f"{type_name} at {artifact.uri} is not recorded in pipeline {g.pipeline}'s metadata")
    return found[-1]


def _custom_config(exec_properties: dict[str, Any]) -> dict[str, Any]:
    return json.loads(exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY) or "null") or {}


# --- Transform: the training window -------------------------------------------------------------


class TransformExecutor(transform_executor.Executor):
    """Transform analyses the training window: this run's span (it passed the gate) and the
    passed copies of the newest older spans. It writes the transform graph only (no
    transformed examples: the Trainer and the Tuner apply the graph to the window's raw
    examples as they read them), and records the window on it for them."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        beam_speed.apply()
        config = _custom_config(exec_properties)
        g = load_graph(config[LINEAGE_KEY])
        current = _recorded(g, input_dict[standard_component_specs.EXAMPLES_KEY][0], "Examples")
        window = lineage.training_window(g, current, int(config.get(WINDOW_KEY, 1)))
        logger.info("training window: spans %s", [lineage.span_of(a) for a in window])
        input_dict[standard_component_specs.EXAMPLES_KEY] = [input_dict[standard_component_specs.EXAMPLES_KEY][0]] + [
            tfx_artifact(a, standard_artifacts.Examples) for a in window[1:]
        ]
        # The analyses of the window's earlier spans, from the run that last analysed them
        # (tf.Transform keys them by the span's files and by the analysers' graph, so a
        # changed preprocessing_fn recomputes them): span N's run analyses span N only.
        cache = lineage.analyzer_cache(g) if config.get(ANALYZER_CACHE_KEY, True) else None
        if cache is not None:
            input_dict[standard_component_specs.ANALYZER_CACHE_KEY] = [tfx_artifact(cache, standard_artifacts.TransformCache)]
        super().Do(input_dict, output_dict, exec_properties)
        for artifact in output_dict[standard_component_specs.TRANSFORM_GRAPH_KEY]:
            artifact.set_string_custom_property(lineage.WINDOW, json.dumps([a.uri for a in window]))
            artifact.set_string_custom_property(CACHE_FROM, cache.uri if cache is not None else "")


def train_on_window(g: lineage.Graph, input_dict: dict[str, list[types.Artifact]]) -> str:
    """Replaces the Examples input of the Trainer or the Tuner (this run's span) by the training
    window Transform analysed, as recorded on the transform graph. Returns the window (JSON list
    of URIs, newest span first)."""
    window = str(input_dict[standard_component_specs.TRANSFORM_GRAPH_KEY][0].get_custom_property(lineage.WINDOW) or "[]")
    current = input_dict[standard_component_specs.EXAMPLES_KEY][0]
    earlier = lineage.examples_by_uri(g, [uri for uri in json.loads(window) if uri != current.uri])
    earlier_examples = [tfx_artifact(a, standard_artifacts.Examples) for a in earlier]
    input_dict[standard_component_specs.EXAMPLES_KEY] = [current, *earlier_examples]
    return window


# --- Trainer: warm start and the newest tuning ---------------------------------------------------


class ResolvingTrainer:
    """Mixed into a Trainer executor (local, or TFX's Vertex Training one): trains on the
    window, adds the warm-start model and, without a Tuner in this run, the newest tuning to the
    inputs, then records them and the window on the model."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        config = _custom_config(exec_properties)
        g = load_graph(config[LINEAGE_KEY])
        window = train_on_window(g, input_dict)
        spans = [lineage.span_of(a) for a in lineage.examples_by_uri(g, json.loads(window))]
        base = lineage.warm_start_model(g, max(spans)) if spans else None
        if base is not None:
            input_dict[standard_component_specs.BASE_MODEL_KEY] = [tfx_artifact(base, standard_artifacts.Model)]
        if not input_dict.get(standard_component_specs.HYPERPARAMETERS_KEY):
            tuning = lineage.latest_tuning(g)
            if tuning is not None:
                input_dict[standard_component_specs.HYPERPARAMETERS_KEY] = [
                    tfx_artifact(tuning, standard_artifacts.HyperParameters)
                ]
        tuned = input_dict.get(standard_component_specs.HYPERPARAMETERS_KEY) or []
        logger.info("warm start from %s; hyperparameters from %s", base.uri if base else None, tuned[0].uri if tuned else None)
        super().Do(input_dict, output_dict, exec_properties)  # type: ignore[misc]
        for model in output_dict[standard_component_specs.MODEL_KEY]:
            model.set_string_custom_property(lineage.WINDOW, window)
            model.set_string_custom_property(lineage.WARM_START_FROM, base.uri if base else "")
            model.set_string_custom_property(lineage.HYPERPARAMETERS_FROM, tuned[0].uri if tuned else "")


class ResolvingTuner:
    """Mixed into a Tuner executor (local, or TFX's Vertex one): the trials train on the window."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        train_on_window(load_graph(_custom_config(exec_properties)[LINEAGE_KEY]), input_dict)
        super().Do(input_dict, output_dict, exec_properties)  # type: ignore[misc]


class TunerExecutor(ResolvingTuner, tuner_executor.Executor):
    """The Tuner in the pipeline's own process (local runs)."""


class TrainerExecutor(ResolvingTrainer, trainer_executor.GenericExecutor):
    """The Trainer in the pipeline's own process (local runs)."""


# --- Evaluator: the baseline ------------------------------------------------------------------


class EvaluatorExecutor(evaluator_executor.Executor):
    """TFX's Evaluator with the baseline resolved here: the most recently blessed model of this
    pipeline other than the candidate. TFX records it on the blessing (baseline_model).

    When the baseline's own evaluation was on the same eval data with the same metrics
    (lineage.recorded_evaluation), its figures are read from there instead of evaluated again
    (pipeline/recorded_baseline.py): TFMA evaluates the candidate alone, and the output,
    validation and blessing are those of a two-model evaluation."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        beam_speed.apply()
        tfma_speed.apply()
        g = load_graph(exec_properties[LINEAGE_KEY])
        candidate = input_dict[standard_component_specs.MODEL_KEY][0]
        baseline = lineage.baseline_model(g, candidate.uri)
        eval_config = tfma.EvalConfig()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.EVAL_CONFIG_KEY], eval_config)
        splits = json_utils.loads(exec_properties.get(standard_component_specs.EXAMPLE_SPLITS_KEY) or "null") or ["eval"]
        key = recorded_baseline.evaluation_key(
            eval_config, [a.uri for a in input_dict[standard_component_specs.EXAMPLES_KEY]], splits
        )
        recorded = lineage.recorded_evaluation(g, baseline, key) if baseline else None
        if recorded is not None and not recorded_baseline.reusable(recorded.uri):
            recorded = None
        logger.info("baseline: %s (figures %s)", baseline.uri if baseline else None, recorded.uri if recorded else "evaluated")
        input_dict[standard_component_specs.BASELINE_MODEL_KEY] = (
            [tfx_artifact(baseline, standard_artifacts.Model)] if baseline and recorded is None else []
        )
        super().Do(input_dict, output_dict, exec_properties)
        evaluation = output_dict[standard_component_specs.EVALUATION_KEY][0]
        evaluation.set_string_custom_property(lineage.EVALUATED_ON, key)
        evaluation.set_string_custom_property(lineage.BASELINE_EVALUATION, recorded.uri if recorded else "")
        blessings = output_dict.get(standard_component_specs.BLESSING_KEY, [])
        if baseline is not None and recorded is not None:
            result = recorded_baseline.complete_for_models(evaluation.uri, recorded.uri, eval_config, candidate.uri, baseline.uri)
            for blessing in blessings:
                _bless(blessing, baseline, result.validation_ok)
        for blessing in blessings:
            # TFX records the baseline's numeric id too; the one a store gives is an MLMD id
            # locally and a resource name on Vertex (where TFX's entrypoint would look the
            # number up among the task's own inputs and fail): the URI it also records is the
            # reference both stores share.
            properties = blessing.mlmd_artifact.custom_properties
            if "baseline_model_id" in properties and not (baseline and baseline.ref.isdigit()):
                del properties["baseline_model_id"]


def _bless(blessing: types.Artifact, baseline: lineage.Artifact, ok: bool) -> None:
    """The blessing as TFX's Evaluator writes it after a two-model validation."""
    blessing.set_string_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baseline.uri)
    if baseline.ref.isdigit():
        blessing.set_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, int(baseline.ref))
    for name in (evaluator_constants.BLESSED_FILE_NAME, evaluator_constants.NOT_BLESSED_FILE_NAME):
        if fileio.exists(os.path.join(blessing.uri, name)):
            fileio.remove(os.path.join(blessing.uri, name))
    name = evaluator_constants.BLESSED_FILE_NAME if ok else evaluator_constants.NOT_BLESSED_FILE_NAME
    io_utils.write_string_file(os.path.join(blessing.uri, name), "")
    blessing.set_int_custom_property(
        evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY,
        evaluator_constants.BLESSED_VALUE if ok else evaluator_constants.NOT_BLESSED_VALUE,
    )


class EvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = {**standard_component_specs.EvaluatorSpec.PARAMETERS, LINEAGE_KEY: ExecutionParameter(type=str)}


class Evaluator(evaluator_component.Evaluator):
    """TFX's Evaluator, resolving its baseline itself (EvaluatorExecutor)."""

    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(EvaluatorExecutor)

    def __init__(self, lineage_scope: str, examples: types.BaseChannel, model: types.BaseChannel, eval_config: Any):
        # TFX's Evaluator.__init__ builds its own spec class; this is the same spec (as TFX
        # builds it for these arguments) with the lineage scope added.
        spec = EvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=None,
            feature_slicing_spec=None,
            fairness_indicator_thresholds=json_utils.dumps(None),
            example_splits=json_utils.dumps(None),
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            eval_config=eval_config,
            blessing=types.Channel(type=standard_artifacts.ModelBlessing),
            schema=None,
            module_file=None,
            module_path=None,
            **{LINEAGE_KEY: lineage_scope},
        )
        base_component.BaseComponent.__init__(self, spec=spec)
