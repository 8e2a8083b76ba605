"""DataGate: the component that stops a run before Transform when the data is not fit to train on.

It reads what ExampleValidator found for the new span and adds drift against the previous span
of this pipeline that passed (the schema's drift_comparator thresholds), which it finds itself
in the metadata store (`lineage.drift_reference`, on ML Metadata or Vertex ML Metadata). Anomalies nobody accepted raise
`DataValidationError`, so Transform, Trainer, Evaluator and Pusher never run and nothing is
pushed. A pass publishes a `result` artifact of its own type, `DataGateResult`. Later
runs resolve these results (pipeline/resolvers.py): only the Examples artifacts a result
judged enter a training window, and drift is measured against the newest earlier one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.orchestration import data_types
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils

from modules import features as F
from pipeline import accepting, lineage
from pipeline import data_checks as D
from pipeline import validation as V
from pipeline.lineage import GATE_RESULT_TYPE, span_of
from pipeline.metadata_backends import backend_for_scope

logger = logging.getLogger(__name__)

GATE_FILE = "gate.json"


class DataGateResult(types.Artifact):
    """What the data gate passed: per split, the drift anomalies (SchemaDiff.pb) and a copy of
    the statistics (FeatureStats.pb, the next span's drift reference), and gate.json. Only a
    pass publishes one, so every DataGateResult stands for data fit to train on."""

    # No PROPERTIES: KFP (the Vertex compiler) allows none on custom types; the split names
    # are a custom property.
    TYPE_NAME = GATE_RESULT_TYPE


def split_dir(artifact: Any, split: str) -> str:
    """A split's folder in an artifact (`Split-<name>`, TFX's layout)."""
    return os.path.join(artifact.uri, f"Split-{split}")


def _split_stats(artifact: types.Artifact, split: str):
    return V.load_statistics(artifact_utils.get_split_uri([artifact], split))


class Executor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        current = input_dict["statistics"][0]
        span = int(input_dict["examples"][0].get_custom_property("span") or 0)
        schema = V.load_schema(io_utils.get_only_uri_in_dir(artifact_utils.get_single_uri(input_dict["schema"])))
        accept = accepted_anomalies(exec_properties.get("accept") or "[]")
        splits = artifact_utils.decode_split_names(current.split_names)

        limits = D.Limits.from_json(exec_properties["limits"]) if exec_properties.get("limits") else None
        examples = input_dict["examples"][0]

        # What is wrong with the delivered files comes first: it explains what TFDV says next.
        rows: list[dict] = []
        if limits is not None and exec_properties.get("input_pattern"):
            rows += D.file_rows(D.span_files(exec_properties["input_pattern"], span), limits, span=span, split="-")
        anomalies = input_dict["anomalies"][0]
        for split in splits:
            rows += V.empty_data_rows(_split_stats(current, split), span=span, split=split)
            rows += V.anomaly_rows(V.load_anomalies(artifact_utils.get_split_uri([anomalies], split)), span=span, split=split)

        # Drift against the newest earlier pass of this pipeline; its statistics are kept in the
        # gate's result, since StatisticsGen does not record the span.
        reference = None
        if exec_properties.get("lineage"):
            g = backend_for_scope(exec_properties["lineage"]).load()
            recorded = g.by_uri(examples.uri, "Examples")
            reference = lineage.drift_reference(g, recorded[-1]) if recorded else None
        drift: dict[str, list[V.Comparison]] = {}
        if reference is not None:
            found, drift = V.drift_by_split(current.uri, reference.uri, schema, splits, span, limits)
            rows += found

        # Event times: not in the future of this run, not far from the reference span's.
        if limits is not None:
            for split in splits:
                reference_stats = V.load_statistics(split_dir(reference, split)) if reference is not None else None
                rows += D.time_rows(
                    _split_stats(current, split), reference_stats, F.EVENT_TIME_KEY, time.time(), limits, span=span, split=split
                )

        # The label: its rate in range and close to the reference's, and enough of each class in
        # the eval split for the Evaluator's verdict to count. A label input that is not numeric
        # (text in a number column) is a row of the table, not a crash.
        label_rates: dict[str, float] = {}
        if limits is not None:
            counts = {}
            for split in splits:
                try:
                    counts[split] = D.label_counts(examples.uri, split)
                except D.LabelUnreadable as e:
                    rows.append(D.label_unreadable_row(split, str(e), F.LABEL_KEY, span=span))
            label_rates = D.summarize_counts(counts)
            previous = read_result(reference.uri).get("label_rate") if reference is not None else None
            rows += D.label_rows(counts, previous, limits, F.LABEL_KEY, span=span)

        rejected, accepted = accepting.split_accepted(rows, accept)
        if rejected:
            raise V.DataValidationError(rejected, accepted)

        result = output_dict["result"][0]
        result.set_string_custom_property("split_names", artifact_utils.encode_split_names(splits))
        for split in splits:
            out_dir = split_dir(result, split)
            fileio.makedirs(out_dir)
            found = [r for r in rows if r["split"] == split and r["kind"] in V.DRIFT_KINDS]
            io_utils.write_bytes_file(os.path.join(out_dir, "SchemaDiff.pb"), _as_anomalies(found).SerializeToString())
            fileio.copy(
                os.path.join(artifact_utils.get_split_uri([current], split), "FeatureStats.pb"),
                os.path.join(out_dir, "FeatureStats.pb"),
            )
        result.set_int_custom_property("span", span)
        result.set_int_custom_property("accepted_anomalies", len(accepted))
        result.set_int_custom_property(lineage.REFERENCE_SPAN, span_of(reference) if reference is not None else -1)
        result.set_string_custom_property(lineage.REFERENCE_URI, reference.uri if reference is not None else "")
        summary = {
            "span": span,
            "reference_span": span_of(reference) if reference is not None else None,
            "accepted": accepted,
            "accept": list(accept),
            "drift": {s: [dataclasses.asdict(m) for m in ms] for s, ms in drift.items()},
            "label_rate": label_rates,
        }
        io_utils.write_string_file(os.path.join(result.uri, GATE_FILE), json.dumps(summary, indent=2))
        if accepted:
            logger.warning("data gate: %d anomalies accepted by the operator:\n%s", len(accepted), V.format_rows(accepted))


def accepted_anomalies(value: str) -> tuple[str, ...]:
    """The `accept` property: a JSON list of FEATURE, FEATURE:KIND or *. On Vertex AI it is a
    runtime parameter typed by the operator, so a malformed one is a clear error."""
    try:
        try:
            items = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError("not JSON") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ValueError("not a JSON list of strings")
        return accepting.parse_accept(items)
    except ValueError as e:
        raise ValueError(
            f'accept_anomalies: {e}: {value!r} (expected e.g. ["fare", "company:ENUM_TYPE_UNEXPECTED_STRING_VALUES"])'
        ) from None


def _as_anomalies(rows: list[dict]):
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    out = anomalies_pb2.Anomalies()
    for row in rows:
        if row["kind"] not in anomalies_pb2.AnomalyInfo.Type.keys():
            continue  # a check of our own: in gate.json only
        info = out.anomaly_info[row["feature"]]
        info.severity = anomalies_pb2.AnomalyInfo.ERROR
        info.description = row["description"]
        info.reason.add(type=anomalies_pb2.AnomalyInfo.Type.Value(row["kind"]), description=row["description"])
    return out


def read_result(artifact_uri: str) -> dict:
    return json.loads(io_utils.read_string_file(os.path.join(artifact_uri, GATE_FILE)))


class DataGateSpec(types.ComponentSpec):
    PARAMETERS = {
        # JSON list of FEATURE, FEATURE:KIND or * (see accepting.parse_accept).
        "accept": ExecutionParameter(type=str),
        # The limits config (schemas/limits.json) as JSON; empty: TFDV's checks only.
        "limits": ExecutionParameter(type=str, optional=True),
        # Where ExampleGen read the span's files ({SPAN} filled in at run time); empty when the
        # input is not files (BigQuery).
        "input_pattern": ExecutionParameter(type=str, optional=True),
        # Where to find the drift reference: the store (no secret) and the pipeline that scopes
        # it (metadata_backends.scope).
        "lineage": ExecutionParameter(type=str, optional=True),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "schema": ChannelParameter(type=standard_artifacts.Schema),
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
    }
    OUTPUTS = {"result": ChannelParameter(type=DataGateResult)}


class DataGate(base_component.BaseComponent):
    """Raises on anomalies nobody accepted; wire Transform after it (add_upstream_node)."""

    SPEC_CLASS = DataGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        examples,
        statistics,
        schema,
        anomalies,
        lineage_scope: str = "",
        accept: tuple[str, ...] | data_types.RuntimeParameter = (),
        limits: str = "",
        input_pattern: str = "",
    ):
        """`accept`: the anomalies accepted, or a RuntimeParameter (a JSON list set per run, on
        Vertex AI: `vertex submit --accept-anomalies`)."""
        super().__init__(
            DataGateSpec(
                examples=examples,
                statistics=statistics,
                schema=schema,
                anomalies=anomalies,
                lineage=lineage_scope,
                accept=accept if isinstance(accept, data_types.RuntimeParameter) else json.dumps(sorted(accept)),
                limits=limits,
                input_pattern=input_pattern,
                result=types.Channel(type=DataGateResult),
            )
        )
