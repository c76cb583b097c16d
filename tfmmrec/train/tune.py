"""keras-tuner search over run-config keys, for the tf_keras (TFRS) models.

Why not ``keras_tuner.Tuner``: keras-tuner 1.4.8 always builds on Keras 3, and its ``Tuner``
type-checks what the hypermodel returns against Keras 3's ``Model``, so a tf_keras TFRS model
is rejected (``FatalTypeError ... Received: <tf_keras.src.engine.functional.Functional>``).
``ConfigTuner`` subclasses the engine-neutral ``BaseTuner`` instead (keras-tuner's base for
custom training loops and non-Keras models) and overrides ``run_trial``: a trial is a
``RunConfig`` with the trial's values applied, and ``trial_fn`` trains it with our own
``fit``/evaluation code and returns its validation metrics. Everything else is keras-tuner's:
the oracles (grid, random, Bayesian), trial bookkeeping on disk, and resuming (a search
started again with the same directory continues where it stopped; completed trials are not
rerun, an interrupted one is retried).

The search space is ``tune.space``: config key -> values to try, so anything in the run
config is tunable without code. Each finished trial is also written for TensorBoard's HParams
dashboard (``DIR/hparams``), and the best configuration is written back as a run-config YAML.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras_tuner as kt
import tensorflow as tf
import yaml
from keras_tuner.src.tuners.gridsearch import LinkedList
from tensorboard.plugins.hparams import api as hparams_api

from tfmmrec.config import ConfigError, RunConfig
from tfmmrec.data.loader import Dataset
from tfmmrec.evaluate.protocol import evaluate_ranking, retrieval_metrics
from tfmmrec.train.coldstart import train_any_retrieval
from tfmmrec.train.fit import train_ranking
from tfmmrec.train.prepare import prepare_data, ranking_model, retrieval_model
from tfmmrec.train.run_dir import write_json

TrialFn = Callable[[RunConfig], dict[str, float]]


class ResumableGridSearchOracle(kt.oracles.GridSearchOracle):
    """keras-tuner 1.4.8's grid oracle does not save its place in the grid (the ordered list of
    tried combinations), so a reloaded grid search stops at once without a new trial. Rebuild
    that place from the trials on disk when the state is reloaded."""

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        ids = [t for t in self.start_order if t in self.trials]
        ids.sort(key=functools.cmp_to_key(lambda a, b: self._compare(self.trials[a].hyperparameters.values,
                                                                     self.trials[b].hyperparameters.values)))
        self._ordered_ids = LinkedList()
        for trial_id in ids:
            self._ordered_ids.insert(trial_id)
        self._populate_next = list(ids)


ORACLES = {"grid": ResumableGridSearchOracle, "random": kt.oracles.RandomSearchOracle,
           "bayesian": kt.oracles.BayesianOptimizationOracle}


def _literal(value: Any) -> str:
    """``value`` as YAML, the form ``RunConfig.with_overrides`` parses (``1.0e-05``, not ``1e-05``)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n").strip()


def _choices(key: str, values: list[Any]) -> list[Any]:
    """One type per key (keras-tuner and HParams both require it); ints among floats become floats."""
    if not isinstance(values, list) or not values:
        raise ConfigError(f"tune.space.{key}: expected a non-empty list of values, got {values!r}")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values) and any(
            isinstance(v, float) for v in values):
        values = [float(v) for v in values]
    kinds = {type(v) for v in values}
    if len(kinds) > 1 or not kinds <= {int, float, str, bool}:
        raise ConfigError(f"tune.space.{key}: values must share one type (number, string or bool), got {values!r}")
    return values


def search_space(cfg: RunConfig) -> kt.HyperParameters:
    """``tune.space`` as keras-tuner ``Choice``s; each key is checked against the run config."""
    hp = kt.HyperParameters()
    if not cfg.tune.space:
        raise ConfigError("tune.space: empty; give at least one config key and values to try")
    for key, values in cfg.tune.space.items():
        values = _choices(key, values)
        for value in values:
            try:
                cfg.with_overrides([f"{key}={_literal(value)}"])
            except ConfigError as err:
                raise ConfigError(f"tune.space.{key}: {err}") from None
        hp.Choice(key, values, ordered=False)
    return hp


def trial_config(base: RunConfig, values: dict[str, Any], *, trial_epochs: bool = True) -> RunConfig:
    """``base`` with a trial's values applied (and ``tune.epochs``, when set, as the task's epochs)."""
    overrides = [f"{k}={_literal(v)}" for k, v in values.items()]
    if "retrieval.temperature" in values and "retrieval.temperature_candidates" not in values:
        overrides.append("retrieval.temperature_candidates=[]")  # a trial trains at the temperature it is given
    if trial_epochs and base.tune.epochs is not None:
        overrides.append(f"{base.tune.task}.epochs={base.tune.epochs}")
    return base.with_overrides(overrides)


class ConfigTuner(kt.engine.base_tuner.BaseTuner):
    """Tunes ``tune.space`` keys of ``base``; ``trial_fn(config) -> {metric: value}`` trains and
    evaluates one configuration and must return ``objective``.

    Args:
      directory: tuner state (``search/``) and HParams logs (``hparams/``); reused to resume.
      objective: metric name from ``trial_fn``; ``direction``: ``max`` or ``min``.
    """

    def __init__(self, base: RunConfig, trial_fn: TrialFn, directory: str | Path, *, objective: str,
                 direction: str = "max", overwrite: bool = False) -> None:
        tune = base.tune
        if tune.algorithm not in ORACLES:
            raise ConfigError(f"tune.algorithm: {tune.algorithm!r} is not one of {sorted(ORACLES)}")
        self.base, self.trial_fn = base, trial_fn
        self.directory_path = Path(directory)
        self.objective_name = objective
        space = search_space(base)
        oracle = ORACLES[tune.algorithm](objective=kt.Objective(objective, direction), max_trials=tune.max_trials,
                                         hyperparameters=space, allow_new_entries=False, tune_new_entries=False,
                                         seed=base.seed)
        super().__init__(oracle=oracle, hypermodel=None, directory=str(self.directory_path),
                         project_name="search", overwrite=overwrite)
        saved = {h.name: list(h.values) for h in self.oracle.hyperparameters.space}
        wanted = {h.name: list(h.values) for h in space.space}
        if saved != wanted:
            raise ConfigError(f"tune.space differs from the search already in {self.directory_path}: "
                              f"{saved} there; resume with the same space, or use another tune.directory")
        self._write_hparams_config(space)

    def run_trial(self, trial: kt.engine.trial.Trial, *args: Any, **kwargs: Any) -> dict[str, float]:
        values = dict(trial.hyperparameters.values)
        metrics = self.trial_fn(trial_config(self.base, values))
        if self.objective_name not in metrics:
            raise ValueError(f"trial_fn returned {sorted(metrics)}, without the objective {self.objective_name!r}")
        with tf.summary.create_file_writer(str(self.hparams_dir / trial.trial_id)).as_default():
            hparams_api.hparams(values, trial_id=trial.trial_id)
            for name, value in metrics.items():
                tf.summary.scalar(name, value, step=0)
        return {k: float(v) for k, v in metrics.items()}

    @property
    def hparams_dir(self) -> Path:
        return self.directory_path / "hparams"

    def _write_hparams_config(self, space: kt.HyperParameters) -> None:
        """The HParams dashboard's column definitions (hyperparameters and the objective)."""
        with tf.summary.create_file_writer(str(self.hparams_dir)).as_default():
            hparams_api.hparams_config(
                hparams=[hparams_api.HParam(h.name, hparams_api.Discrete(list(h.values))) for h in space.space],
                metrics=[hparams_api.Metric(self.objective_name)])

    def trials(self) -> list[dict[str, Any]]:
        """Completed trials in the order they ran: ``{"trial_id", "values", "metrics", "objective"}``."""
        out = []
        for trial_id in self.oracle.start_order:
            trial = self.oracle.trials[trial_id]
            if trial.status != kt.engine.trial.TrialStatus.COMPLETED:
                continue
            metrics = {name: trial.metrics.get_last_value(name) for name in trial.metrics.metrics}
            out.append({"trial_id": trial_id, "values": dict(trial.hyperparameters.values), "metrics": metrics,
                        "objective": metrics[self.objective_name]})
        return out

    def failed_trials(self) -> list[tuple[str, str]]:
        """(trial id, traceback) of trials whose ``trial_fn`` raised."""
        return [(t.trial_id, t.message or "") for t in self.oracle.trials.values()
                if t.status in (kt.engine.trial.TrialStatus.FAILED, kt.engine.trial.TrialStatus.INVALID)]

    def best_config(self) -> RunConfig:
        best = self.oracle.get_best_trials(1)
        if not best:
            raise RuntimeError(f"no completed trial in {self.directory_path}")
        # Short trials (tune.epochs) rank configurations; the config to train keeps its epochs.
        return trial_config(self.base, dict(best[0].hyperparameters.values), trial_epochs=False)


@dataclass
class TuneResult:
    """A finished (or resumed) search: every completed trial in order, and the best config."""

    trials: list[dict[str, Any]]
    best_config: RunConfig
    best_path: Path
    objective: str
    directory: Path


def tune(dataset_dir: str | Path, out_dir: str | Path, config: RunConfig | None = None, *,
         dataset: Dataset | None = None, overwrite: bool = False, verbose: int = 0) -> TuneResult:
    """Search ``config.tune.space`` with keras-tuner (:class:`ConfigTuner`).

    The objective is the validation split's Recall@``tune.objective_k`` (retrieval) or AUC
    (ranking; -RMSE for ratings), never the test split. The tuner's state lives in
    ``OUT_DIR/<tune.directory>``: calling again with the same directory resumes the search.
    Writes ``OUT_DIR/best.yaml`` (train it with ``tfmmrec train --config``) and
    ``OUT_DIR/trials.json``; HParams logs in ``OUT_DIR/<tune.directory>/hparams``.
    """
    cfg = config or RunConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prep = prepare_data(dataset_dir, cfg, dataset=dataset, verbose=verbose)
    task, k = cfg.tune.task, cfg.tune.objective_k
    if task not in ("retrieval", "ranking"):
        raise ConfigError(f"tune.task: {task!r} is not one of ['ranking', 'retrieval']")
    if task == "retrieval":
        if cfg.tune.variant not in ("multimodal", "id_only"):
            raise ConfigError(f"tune.variant: {cfg.tune.variant!r} is not one of ['id_only', 'multimodal']")
        use_content = cfg.tune.variant == "multimodal" and prep.has_content
        objective, direction = f"val_recall@{k}", "max"

        def trial_fn(trial_cfg: RunConfig) -> dict[str, float]:
            tf.keras.utils.set_random_seed(trial_cfg.seed)
            model = retrieval_model(prep, trial_cfg, use_content)
            train_any_retrieval(model, prep.data, trial_cfg.retrieval, seed=trial_cfg.seed, verbose=0)
            res = retrieval_metrics(model, prep.data, [k], split="valid")["all"]
            return {f"val_recall@{k}": res[f"recall@{k}"], f"val_ndcg@{k}": res[f"ndcg@{k}"]}
    else:
        metric = "rmse" if prep.mode == "rating" else "auc"
        objective, direction = f"val_{metric}", "min" if metric == "rmse" else "max"

        def trial_fn(trial_cfg: RunConfig) -> dict[str, float]:
            tf.keras.utils.set_random_seed(trial_cfg.seed)
            ranker = ranking_model(prep, trial_cfg)
            train_ranking(ranker, prep.rank_data, trial_cfg.ranking, mode=prep.mode, seed=trial_cfg.seed, verbose=0)
            res = evaluate_ranking(ranker, prep.rank_data, prep.mode, negatives=trial_cfg.ranking.negatives,
                                   seed=trial_cfg.seed, split="valid")
            return {objective: res[metric]}

    if not len(prep.data.valid):
        raise ConfigError("tune: the split has no validation interactions (split.valid_frac); "
                          "tuning on the test split would overfit it")
    directory = Path(cfg.tune.directory) if Path(cfg.tune.directory).is_absolute() else out_dir / cfg.tune.directory
    tuner = ConfigTuner(cfg, trial_fn, directory, objective=objective, direction=direction, overwrite=overwrite)
    print(f"[tune] {task}: {cfg.tune.algorithm} search over {sorted(cfg.tune.space)}, objective {objective} "
         f"({direction}), up to {cfg.tune.max_trials} trials; state in {directory}")
    tuner.search(verbose=verbose)
    for trial_id, message in tuner.failed_trials():
        print(f"[tune] trial {trial_id} failed:\n{message}")
    trials = tuner.trials()
    best = tuner.best_config()
    best_path = out_dir / "best.yaml"
    best.to_yaml(best_path)
    write_json(out_dir / "trials.json", trials)
    return TuneResult(trials, best, best_path, objective, directory)
