"""A KerasTuner search with modules.vizier.VizierOracle against the faked VizierService (run in
a subprocess with FAKE_VERTEX_DIR set and tests/harness/site on PYTHONPATH). The trials score a
known function of the hyperparameters instead of training, so the search takes seconds.

Prints {"best": the best hyperparameter values} as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys

import keras_tuner as kt

from modules.hparams import SEARCH_SPACE, HParams
from modules.tuning import declare
from modules.vizier import VizierOracle


def score(values: dict) -> float:
    return 0.9 - abs(values["learning_rate"] - 0.004) * 10 - values["dropout"] / 10


class Synthetic(kt.engine.base_tuner.BaseTuner):
    def __init__(self, fail_trial: str | None, nan_trial: str | None, **kwargs):
        super().__init__(hypermodel=None, **kwargs)
        self.fail_trial, self.nan_trial = fail_trial, nan_trial

    def run_trial(self, trial, *args, **kwargs):
        if trial.trial_id == self.fail_trial:
            raise RuntimeError(f"trial {trial.trial_id} ran out of memory")
        if trial.trial_id == self.nan_trial:  # a diverged training
            return {"val_auc": float("nan"), "best_step": 100.0}
        return {"val_auc": score(trial.hyperparameters.values), "best_step": 300.0}

    def save_model(self, *args, **kwargs):
        return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", required=True)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--fail-trial")
    parser.add_argument("--nan-trial")
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    hp = kt.HyperParameters()
    declare(hp, HParams())
    oracle = VizierOracle(
        "my-project",
        "europe-west4",
        args.study,
        SEARCH_SPACE,
        first_values=hp.values,
        objective=kt.Objective("val_auc", "max"),
        max_trials=args.trials,
        hyperparameters=hp,
    )
    tuner = Synthetic(args.fail_trial, args.nan_trial, oracle=oracle, directory=args.dir, project_name="search", overwrite=True)
    tuner.search()
    json.dump({"best": tuner.get_best_hyperparameters()[0].values}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
