"""KerasTuner's oracle backed by Vertex AI Vizier: the Tuner's search on Vertex.

Vizier chooses each trial (`SuggestTrials`, its default algorithm: Bayesian optimisation); the
trial's best eval AUC is reported with the step it was reached at (`AddTrialMeasurement`) and
as the trial's final measurement (`CompleteTrial`; a failed trial is reported infeasible). The first trial is the
configured hyperparameters, added to the study as a user trial (`CreateTrial`), so a tuning is
never worse than what it started from and Vizier learns from that point too.

The study is created on the first trial, or found again by its display name (`LookupStudy`):
a retried tuning of the same data continues its study instead of starting over.

TFX's Vertex Tuner runs the parallel trials as one Vertex AI Training job; KerasTuner's chief
oracle (this class, in the job's primary replica) is the only caller of Vizier, and every
replica asks it for trials (tfx/extensions/google_cloud_ai_platform/tuner/executor.py).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras_tuner as kt

# absl: shown wherever TFX runs the Tuner (on Vertex, in the replica's log).
from absl import logging

METRIC = "val_auc"


def study_spec(space: Mapping[str, tuple], metric: str = METRIC):
    """The Vizier StudySpec of a search space written like modules.hparams.SEARCH_SPACE."""
    from google.cloud.aiplatform_v1 import StudySpec

    Spec = StudySpec.ParameterSpec
    parameters = []
    for name, spec in space.items():
        kind = spec[0]
        if kind == "log":
            parameters.append(
                Spec(
                    parameter_id=name,
                    double_value_spec=Spec.DoubleValueSpec(min_value=spec[1], max_value=spec[2]),
                    scale_type=Spec.ScaleType.UNIT_LOG_SCALE,
                )
            )
        elif kind == "linear":
            low, high, step = spec[1:4]
            count = int(round((high - low) / step)) + 1
            values = [round(low + i * step, 10) for i in range(count)]
            parameters.append(Spec(parameter_id=name, discrete_value_spec=Spec.DiscreteValueSpec(values=values)))
        elif kind == "choice" and all(isinstance(v, str) for v in spec[1]):
            parameters.append(Spec(parameter_id=name, categorical_value_spec=Spec.CategoricalValueSpec(values=list(spec[1]))))
        elif kind == "choice" and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec[1]):
            values = sorted(float(v) for v in spec[1])
            parameters.append(Spec(parameter_id=name, discrete_value_spec=Spec.DiscreteValueSpec(values=values)))
        else:
            raise ValueError(f"search space {name!r}: {spec!r} has no Vizier parameter type")
    return StudySpec(
        metrics=[StudySpec.MetricSpec(metric_id=metric, goal=StudySpec.MetricSpec.GoalType.MAXIMIZE)],
        parameters=parameters,
        # Vizier's default: Bayesian optimisation.
        algorithm=StudySpec.Algorithm.ALGORITHM_UNSPECIFIED,
        # A trial's value is its best measurement (the best weights are what training keeps).
        measurement_selection_type=StudySpec.MeasurementSelectionType.BEST_MEASUREMENT,
    )


def to_vizier(space: Mapping[str, tuple], values: Mapping[str, Any]) -> list:
    """KerasTuner values -> Vizier trial parameters (numbers as doubles, choices of text as text)."""
    from google.cloud.aiplatform_v1 import Trial

    return [
        Trial.Parameter(parameter_id=name, value=values[name] if isinstance(values[name], str) else float(values[name]))
        for name in space
        if name in values
    ]


def from_vizier(space: Mapping[str, tuple], parameters: Sequence) -> dict[str, Any]:
    """Vizier trial parameters -> KerasTuner values, typed as the space declares them."""
    values: dict[str, Any] = {}
    for p in parameters:
        spec = space[p.parameter_id]
        value = p.value
        if spec[0] == "choice" and not isinstance(spec[1][0], str):
            value = type(spec[1][0])(value)
        elif spec[0] in ("log", "linear"):
            value = float(value)
        values[p.parameter_id] = value
    missing = sorted(set(space) - set(values))
    if missing:
        raise ValueError(f"Vizier suggested no value for {', '.join(missing)}")
    return values


def study_name_for(prefix: str, *identity: Any) -> str:
    """A study display name that is the same for a retry of the same tuning and differs for
    another (the inputs and settings in `identity`). Vizier allows 128 characters."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{prefix[:100]}-{digest}"


class VizierOracle(kt.Oracle):
    """A KerasTuner oracle whose trials Vertex AI Vizier suggests (see the module docstring)."""

    def __init__(
        self,
        project: str,
        region: str,
        study_display_name: str,
        space: Mapping[str, tuple],
        first_values: Mapping[str, Any] | None = None,
        client: Any = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if self.objective.name != METRIC:
            raise ValueError(f"VizierOracle: the study's metric is {METRIC!r}, the objective is {self.objective.name!r}")
        self.space = dict(space)
        self.parent = f"projects/{project}/locations/{region}"
        self.study_display_name = study_display_name
        self.first_values = dict(first_values or {})
        self._client = client
        self._region = region
        self.study: str | None = None
        self.vizier_trials: dict[str, str] = {}  # KerasTuner trial id -> Vizier trial name

    @property
    def client(self):
        if self._client is None:
            from google.cloud import aiplatform_v1

            self._client = aiplatform_v1.VizierServiceClient(
                client_options={"api_endpoint": f"{self._region}-aiplatform.googleapis.com"}
            )
        return self._client

    def _ensure_study(self) -> str:
        if self.study is not None:
            return self.study
        from google.api_core import exceptions
        from google.cloud import aiplatform_v1 as v1

        try:
            request = v1.LookupStudyRequest(parent=self.parent, display_name=self.study_display_name)
            name: str = self.client.lookup_study(request).name
            logging.info("Vizier: continuing study %s (%s)", self.study_display_name, name)
        except exceptions.NotFound:
            study = v1.Study(display_name=self.study_display_name, study_spec=study_spec(self.space))
            name = self.client.create_study(v1.CreateStudyRequest(parent=self.parent, study=study)).name
            logging.info("Vizier: created study %s (%s)", self.study_display_name, name)
        self.study = name
        return name

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        from google.cloud import aiplatform_v1 as v1

        study = self._ensure_study()
        if not self.trials and self.first_values:
            values = {k: v for k, v in self.first_values.items() if k in self.space}
            trial = self.client.create_trial(
                v1.CreateTrialRequest(parent=study, trial=v1.Trial(parameters=to_vizier(self.space, values)))
            )
        else:
            operation = self.client.suggest_trials(v1.SuggestTrialsRequest(parent=study, suggestion_count=1, client_id=trial_id))
            suggested = operation.result().trials
            if not suggested:  # the study is done (Vizier suggests nothing more)
                return {"status": kt.engine.trial.TrialStatus.STOPPED, "values": None}
            trial = suggested[0]
            values = from_vizier(self.space, trial.parameters)
        self.vizier_trials[trial_id] = trial.name
        return {"status": kt.engine.trial.TrialStatus.RUNNING, "values": {**self.hyperparameters.values, **values}}

    def update_trial(self, trial_id: str, metrics: Mapping[str, float], step: int = 0):
        from google.cloud import aiplatform_v1 as v1

        trial = super().update_trial(trial_id, metrics, step=step)
        if trial_id in self.vizier_trials and METRIC in metrics:
            # StepsTuner reports the step of its best weights as `best_step`.
            measurement = v1.Measurement(
                step_count=int(metrics.get("best_step", step)),
                metrics=[v1.Measurement.Metric(metric_id=METRIC, value=float(metrics[METRIC]))],
            )
            self.client.add_trial_measurement(
                v1.AddTrialMeasurementRequest(trial_name=self.vizier_trials[trial_id], measurement=measurement)
            )
        return trial

    def end_trial(self, trial) -> None:
        # Vizier hears of the end first: once the last trial has ended here, the chief oracle
        # may exit.
        from google.cloud import aiplatform_v1 as v1

        name = self.vizier_trials.get(trial.trial_id)
        if name:
            recorded = self.trials[trial.trial_id].metrics
            best = recorded.get_best_value(METRIC) if recorded.exists(METRIC) else None
            # A NaN AUC (a diverged trial) is no measurement: reported infeasible.
            if trial.status == kt.engine.trial.TrialStatus.COMPLETED and best is not None and not math.isnan(best):
                final = v1.Measurement(metrics=[v1.Measurement.Metric(metric_id=METRIC, value=float(best))])
                request = v1.CompleteTrialRequest(name=name, final_measurement=final)
            else:
                reason = (trial.message or f"trial {trial.status}, val_auc {best}").strip().splitlines()[-1][:500]
                request = v1.CompleteTrialRequest(name=name, trial_infeasible=True, infeasible_reason=reason)
            self.client.complete_trial(request)
        super().end_trial(trial)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        state.update(study=self.study, vizier_trials=self.vizier_trials)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.study = state.get("study")
        self.vizier_trials = dict(state.get("vizier_trials", {}))
