"""Train the models with Keras ``compile``/``fit`` (build them with ``tfmmrec.models.build``).

Build a model under ``strategy.scope()`` (``tfmmrec.train.distribute.resolve_strategy``) to train
it distributed: ``train_*`` compile under the model's own strategy and shard the input by data.
``backup_dir`` turns on fault tolerance (``tfmmrec.train.resume``): rerunning after a kill resumes.
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import tensorflow as tf
import tf_keras as keras

from tfmmrec.config import ConfigError, RankingConfig, RetrievalConfig
from tfmmrec.data.interactions import EncodedInteractions, user_histories
from tfmmrec.fusion.randomness import training_randomness
from tfmmrec.models.catalog_eval import CATALOG_METRICS
from tfmmrec.models.mf import MatrixFactorization
from tfmmrec.models.ranking import DeepFM
from tfmmrec.models.retrieval import TwoTowerRetrieval
from tfmmrec.train.distribute import shard_by_data
from tfmmrec.train.early_stopping import VALIDATION_OBJECTIVES, ValidationEarlyStopping, catalog_monitor
from tfmmrec.train.eval_inputs import ranking_eval_dataset, retrieval_eval_dataset
from tfmmrec.train.inputs import batches_per_epoch, ranking_dataset, ranking_steps_per_epoch, retrieval_dataset
from tfmmrec.train.resume import ResumableBackup, resume_step

# Global batch from which train_retrieval XLA-compiles the step when ``jit_compile`` is auto: at
# 8192 the step went from ~0.5 s to ~0.2 s on the 2-core CPU (benchmarks/README.md).
XLA_FROM_BATCH = 4096


def retrieval_optimizer(cfg: RetrievalConfig) -> keras.optimizers.Optimizer:
    """Adam at ``cfg.learning_rate``; AdamW when ``cfg.weight_decay`` > 0 (decoupled decay: on
    L2-normalised towers an L2 penalty in the loss would reach Adam's update only rescaled by the
    gradient statistics, while decoupled decay shrinks every weight by ``lr * weight_decay`` per step)."""
    if cfg.weight_decay:
        return keras.optimizers.AdamW(cfg.learning_rate, weight_decay=cfg.weight_decay)
    return keras.optimizers.Adam(cfg.learning_rate)


def train_retrieval(model: TwoTowerRetrieval, data: EncodedInteractions, cfg: RetrievalConfig, *,
                    seed: int = 0, verbose: int = 2, callbacks: list[keras.callbacks.Callback] | None = None,
                    backup_dir: str | Path | None = None, backup_every_steps: int = 100,
                    jit_compile: bool | None = None) -> keras.callbacks.History:
    """``cfg.batch_size`` is the global batch (split over the replicas of the model's strategy).
    ``jit_compile`` (else ``cfg.jit_compile``): compile the training step with XLA (see
    benchmarks/README.md); ``None`` = auto: on from a global batch of ``XLA_FROM_BATCH``, where the
    ``batch x batch`` in-batch softmax dominates the step and XLA runs it 2-3x faster, which repays
    the compilation (a few seconds, once per model) within the first epoch.

    Model selection (:func:`retrieval_selection`): after every epoch the model is scored on the
    validation split (full catalog, training items excluded; ``cfg.validation_metric``,
    ``cfg.validation_objective``), training stops after ``cfg.patience`` epochs without a better
    score and the best epoch's weights are restored, so ``cfg.epochs`` is a maximum. Without
    validation rows it warns and trains all ``cfg.epochs``, keeping the last. The returned
    History's ``selection`` holds the chosen epoch and the validation curve.

    With ``cfg.temperature_candidates`` the temperature is selected the same way
    (:func:`temperature_candidates`): the model is trained once per temperature from the same
    initial weights, and the one with the best validation objective is kept (its weights, its
    temperature in ``model.task``, its History; ``selection["temperature"]`` records every
    candidate's best). Each candidate has its own backup under ``backup_dir``, so a resumed run
    restores the finished ones without training them again. A callback with a ``for_subrun(name)``
    method (the TensorBoard ones) is replaced, per candidate, by the one it returns for
    ``temperature_<t>``, so each candidate logs to its own run; the others see every candidate's
    ``fit`` in turn. A callback's ``projector`` is called once, for the kept candidate."""
    temperatures = temperature_candidates(cfg)
    if len(temperatures) == 1 or not (data.valid.user > 0).any():  # (no validation: warned there)
        return _train_retrieval_once(model, data, cfg, seed=seed, verbose=verbose, callbacks=callbacks,
                                     backup_dir=backup_dir, backup_every_steps=backup_every_steps,
                                     jit_compile=jit_compile)
    with model.distribute_strategy.scope():
        model.build_variables()
    initial = model.get_weights()
    best: tuple[float, float, list[Any], keras.callbacks.History] | None = None
    scores: dict[str, float] = {}
    for temperature in temperatures:
        model.set_weights(initial)
        model.task.temperature = temperature
        name = f"temperature_{temperature:g}"
        history = _train_retrieval_once(
            model, data, dataclasses.replace(cfg, temperature=temperature), seed=seed, verbose=verbose,
            callbacks=subrun_callbacks(callbacks, name),
            backup_every_steps=backup_every_steps, jit_compile=jit_compile,
            backup_dir=None if backup_dir is None else Path(backup_dir) / name)
        score = float(history.selection["best"])
        scores[f"{temperature:g}"] = score
        if best is None or score > best[0]:  # ties: the earlier candidate, i.e. cfg.temperature first
            best = (score, temperature, model.get_weights(), history)
    assert best is not None
    _, chosen, weights, history = best
    model.set_weights(weights)
    model.task.temperature = chosen
    history.selection = {**history.selection, "temperature": {"chosen": chosen, "valid_best": scores}}
    show_projectors(callbacks)
    return history


def subrun_callbacks(callbacks: list[keras.callbacks.Callback] | None, name: str) -> list[keras.callbacks.Callback]:
    """For one candidate of a selection: each callback with a ``for_subrun`` (the TensorBoard ones)
    replaced by the one logging to its run ``name``; the others as they are."""
    return [c.for_subrun(name) if hasattr(c, "for_subrun") else c for c in callbacks or []]


def show_projectors(callbacks: list[keras.callbacks.Callback] | None) -> None:
    """Call each callback's ``projector`` (the TensorBoard one): once, for the model that was kept."""
    for callback in callbacks or []:
        if getattr(callback, "projector", None) is not None:
            callback.projector()


def temperature_candidates(cfg: RetrievalConfig) -> list[float]:
    """``cfg.temperature`` first, then the other ``cfg.temperature_candidates`` in their order."""
    out = [float(cfg.temperature)]
    for t in cfg.temperature_candidates:
        if float(t) <= 0:
            raise ConfigError(f"retrieval.temperature_candidates: {t!r} is not > 0")
        if float(t) not in out:
            out.append(float(t))
    return out


def _train_retrieval_once(model: TwoTowerRetrieval, data: EncodedInteractions, cfg: RetrievalConfig, *,
                          seed: int, verbose: int, callbacks: list[keras.callbacks.Callback] | None,
                          backup_dir: str | Path | None, backup_every_steps: int,
                          jit_compile: bool | None) -> keras.callbacks.History:
    """One training of :func:`train_retrieval` at ``cfg.temperature`` (early stopping, backups)."""
    tf.random.set_seed(seed)
    callbacks = list(callbacks or [])
    stopping, validation = retrieval_selection(model, data, cfg, backup_dir)
    if stopping is not None:
        callbacks.insert(0, stopping)  # first: val_objective reaches TensorBoard; restores before the backup
    length = getattr(model.query_tower, "history_length", 0)
    with model.distribute_strategy.scope():
        jit = jit_compile if jit_compile is not None else cfg.jit_compile
        if jit is None:  # auto; history pooling uses tf.unique, which XLA cannot compile
            jit = cfg.batch_size >= XLA_FROM_BATCH and not length
        model.compile(optimizer=retrieval_optimizer(cfg), jit_compile=jit)
        if backup_dir is not None:
            model.build_variables()
            callbacks.append(ResumableBackup(backup_dir, backup_every_steps))
    history = user_histories(data.train, data.num_users, length, cfg.history_sampling, seed)[0] if length else None
    # One endless input iterator for the whole fit (a fresh order every epoch), not a new one per
    # epoch: see ``batched_permutations``. Workers split every global batch between their replicas,
    # so an epoch is the same number of steps on every worker.
    # A resumed run starts the stream at the step after its backup (see ``tfmmrec.train.resume``).
    steps = batches_per_epoch(len(data.train), cfg.batch_size)
    start = resume_step(backup_dir, steps) if backup_dir is not None else 0
    ds = retrieval_dataset(data, cfg.batch_size, seed, history=history,
                           with_target=getattr(model, "uses_target", False), repeat=True, start_step=start)
    with training_randomness(model, seed):
        history = model.fit(shard_by_data(ds), epochs=cfg.epochs, steps_per_epoch=steps, verbose=verbose,
                            callbacks=callbacks, validation_data=validation)
    history.selection = selection_summary(stopping, history, cfg.epochs)
    return history


NO_VALIDATION = ("{what}: the split has no validation interactions of users seen in training "
                 "(split.valid_frac = 0, or a predefined split without 'valid' rows), so no epoch can be "
                 "selected: training all {epochs} epochs and keeping the last (no early stopping)")


def retrieval_selection(model: TwoTowerRetrieval, data: EncodedInteractions, cfg: RetrievalConfig,
                        backup_dir: str | Path | None = None
                        ) -> tuple[ValidationEarlyStopping | None, tf.data.Dataset | None]:
    """The early-stopping callback and validation dataset of :func:`train_retrieval` (``None, None``
    with a warning when the split has no validation rows of known users: the documented fallback
    is to train every epoch and keep the last). Its state goes to ``backup_dir/early_stopping``."""
    try:
        monitor = catalog_monitor(cfg.validation_metric)
    except ValueError as err:
        raise ConfigError(f"retrieval.validation_metric: {err}") from None
    if monitor[4:].split("_at_")[0] not in CATALOG_METRICS:
        raise ConfigError(f"retrieval.validation_metric: {cfg.validation_metric!r} is not one of "
                          f"{[m + '@K' for m in CATALOG_METRICS]}")
    if cfg.validation_objective not in VALIDATION_OBJECTIVES:
        raise ConfigError(f"retrieval.validation_objective: {cfg.validation_objective!r} is not one of "
                          f"{list(VALIDATION_OBJECTIVES)}")
    if not (data.valid.user > 0).any():
        warnings.warn(NO_VALIDATION.format(what="retrieval", epochs=cfg.epochs), UserWarning, stacklevel=3)
        return None, None
    k = int(cfg.validation_metric.partition("@")[2])
    model.catalog_ks = tuple(sorted({*model.catalog_ks, k}))
    stopping = ValidationEarlyStopping(monitor, "max", cfg.patience, cfg.validation_objective,
                                       state_dir=None if backup_dir is None else Path(backup_dir) / "early_stopping")
    valid = shard_by_data(retrieval_eval_dataset(data, "valid", batch_size=cfg.validation_batch_size))
    return stopping, valid


def selection_summary(stopping: ValidationEarlyStopping | None, history: keras.callbacks.History,
                      epochs: int) -> dict[str, Any]:
    """What ``metrics.json`` records of model selection: the chosen epoch (from 1), the epochs
    run and the validation curve; without validation, the fallback (every epoch, the last kept)."""
    if stopping is not None:
        return stopping.summary()
    run = len(history.epoch)
    return {"monitor": None, "objective": None, "best_epoch": None, "best": None, "epochs_run": run,
            "stopped_early": False, "val_curve": [],
            "note": f"no validation rows: trained all {epochs} epochs, kept the last"}


# Keras's AUC is a Riemann sum over thresholds; 1000 of them put val_auc within ~1e-3 of the
# exact (Mann-Whitney) AUC that metrics.json reports (tfmmrec.evaluate.auc), 200 (the default) ~1e-2.
RANKING_AUC_THRESHOLDS = 1000


def per_example_logistic_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy on logits, one value per example (``[batch]``), so that the interactions'
    ``weight`` column can weigh each one; its batch mean equals Keras' ``BinaryCrossentropy``."""
    return keras.losses.binary_crossentropy(y_true[:, None], y_pred[:, None], from_logits=True)


def per_example_squared_error(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Squared error per example (``[batch]``); its batch mean equals Keras' ``MeanSquaredError``."""
    return keras.losses.mean_squared_error(y_true[:, None], y_pred[:, None])


# A validation split whose interactions are at least this share with cold items is a cold-start
# split: each part of a warm/cold model is then selected on its own items (tfmmrec.train.coldstart).
MIN_COLD_VALID_SHARE = 0.1
# The mf ranker's content stage serves cold items only: it is selected on their validation ratings
# whenever there are this many, on a random split too (there: items too rare to reach training).
MIN_COLD_VALID_RATINGS = 100


def train_ranking(model: DeepFM, data: EncodedInteractions, cfg: RankingConfig, *, mode: str,
                  seed: int = 0, verbose: int = 2, callbacks: list[keras.callbacks.Callback] | None = None,
                  backup_dir: str | Path | None = None, backup_every_steps: int = 100) -> keras.callbacks.History:
    """``mode``: ``rating`` (MSE on ratings), ``label`` (BCE on given 0/1 labels) or ``implicit``
    (BCE on positives and sampled negatives). Early stopping on the validation split, best epoch
    restored (:func:`ranking_selection`); the returned History's ``selection`` records it.

    A :class:`MatrixFactorization` trains in stages (``MatrixFactorization.stage``): its id rows,
    then, with content, its content fields against the frozen id rows. Each stage is selected on
    the validation interactions it will serve: the ids on warm items on a cold-start split
    (``MIN_COLD_VALID_SHARE``, else on all), the content on cold ones there or wherever there are
    ``MIN_COLD_VALID_RATINGS`` of them (else on all: too few to select on); ``selection``
    records the content stage's under ``"content"``, and each stage logs to its own TensorBoard
    run (``ids``, ``content``) of ``callbacks``'."""
    fit = dict(mode=mode, seed=seed, verbose=verbose, backup_every_steps=backup_every_steps)
    if not isinstance(model, MatrixFactorization):
        return _fit_ranking(model, data, cfg, callbacks=callbacks, backup_dir=backup_dir, **fit)
    cold = data.cold_valid()
    cold_start = data.cold_valid_share() >= MIN_COLD_VALID_SHARE
    stage_dir = lambda stage: None if backup_dir is None else Path(backup_dir) / stage  # noqa: E731
    model.set_stage("ids")
    try:
        warm_data = dataclasses.replace(data, valid=data.valid.rows(~cold)) if cold_start else data
        history = _fit_ranking(model, warm_data, cfg, backup_dir=stage_dir("ids"), **fit,
                               callbacks=subrun_callbacks(callbacks, "ids") if model.use_content else callbacks)
        history.selection["valid_items"] = "warm" if cold_start else "all"
        if model.content_layers():  # (a catalog without content: nothing to learn cold items from)
            model.set_stage("content")
            on_cold = bool(cold.any()) and (cold_start or int(cold.sum()) >= MIN_COLD_VALID_RATINGS)
            cold_data = dataclasses.replace(data, valid=data.valid.rows(cold)) if on_cold else data
            content = _fit_ranking(model, cold_data, cfg, backup_dir=stage_dir("content"), start_from_mean=False,
                                   callbacks=subrun_callbacks(callbacks, "content"), **fit)
            history.selection["content"] = {**content.selection, "valid_items": "cold" if on_cold else "all"}
    finally:
        model.set_stage("served")
    return history


def _fit_ranking(model: DeepFM, data: EncodedInteractions, cfg: RankingConfig, *, mode: str, seed: int,
                 verbose: int, backup_dir: str | Path | None, callbacks: list[keras.callbacks.Callback] | None = None,
                 backup_every_steps: int, start_from_mean: bool = True) -> keras.callbacks.History:
    """One ``fit`` of :func:`train_ranking`; ``start_from_mean``: the global bias starts at the mean
    training rating (ratings only)."""
    tf.random.set_seed(seed)
    callbacks = list(callbacks or [])
    with model.distribute_strategy.scope():  # metrics must be created under the model's strategy
        if mode == "rating":
            loss = per_example_squared_error
            metrics = [keras.metrics.RootMeanSquaredError(name="rmse")]
        else:
            loss = per_example_logistic_loss
            metrics = [keras.metrics.AUC(from_logits=True, name="auc", num_thresholds=RANKING_AUC_THRESHOLDS)]
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=loss, metrics=metrics)
        if mode == "rating" and len(data.train) and start_from_mean:
            # Start from the mean rating, as matrix factorisation does: from 0 the biases and the
            # embeddings spend the first epochs learning the mean, and the ID embeddings, which
            # overfit within a few epochs, absorb it (test RMSE -0.006 on ml-latest-small and -0.008
            # on MovieLens-100K, 3 seeds: benchmarks/README.md, "Quality"). A resumed run's backup
            # overwrites it with the trained value.
            model.global_bias.assign(float(data.train.target.mean()))
        if backup_dir is not None:
            model({"user": tf.zeros([1], tf.int32), "item": tf.zeros([1], tf.int32)})
    # One endless stream (as in train_retrieval), started after the backup's step when resuming.
    explicit = mode != "implicit"
    steps = ranking_steps_per_epoch(data, cfg.batch_size, cfg.negatives, explicit)
    start = resume_step(backup_dir, steps) if backup_dir is not None else 0
    ds = shard_by_data(ranking_dataset(data, cfg.batch_size, cfg.negatives, seed, explicit=explicit, repeat=True,
                                       start_step=start))
    stopping, validation = ranking_selection(data, cfg, mode, seed, backup_dir)
    if stopping is not None:
        callbacks.insert(0, stopping)
    if backup_dir is not None:  # last: its final backup holds the weights early stopping restored
        callbacks.append(ResumableBackup(backup_dir, backup_every_steps))
    with training_randomness(model, seed):
        history = model.fit(ds, epochs=cfg.epochs, steps_per_epoch=steps, verbose=verbose,
                            validation_data=validation, callbacks=callbacks)
    history.selection = selection_summary(stopping, history, cfg.epochs)
    return history


def ranking_selection(data: EncodedInteractions, cfg: RankingConfig, mode: str, seed: int,
                      backup_dir: str | Path | None = None
                      ) -> tuple[ValidationEarlyStopping | None, tf.data.Dataset | None]:
    """Early stopping on the validation split's RMSE (ratings) or AUC (labels, implicit feedback
    with sampled negatives), best epoch restored: ratings overfit within a few epochs, implicit
    feedback with fresh negatives every epoch much later. No validation rows: a warning, and
    every epoch is trained, the last kept."""
    if not len(data.valid):
        warnings.warn(NO_VALIDATION.format(what="ranking", epochs=cfg.epochs), UserWarning, stacklevel=4)
        return None, None
    monitor, direction = ("val_rmse", "min") if mode == "rating" else ("val_auc", "max")
    stopping = ValidationEarlyStopping(monitor, direction, cfg.patience,
                                       state_dir=None if backup_dir is None else Path(backup_dir) / "early_stopping")
    valid = ranking_eval_dataset(data, "valid", negatives=cfg.negatives, seed=seed, explicit=mode != "implicit")
    return stopping, shard_by_data(valid)
