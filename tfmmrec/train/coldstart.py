"""Build and train the warm/cold retrieval model (``tfmmrec.models.coldstart``) in three stages.

1. warm model: the query tower and the warm item tower, the usual retrieval loss
   (:func:`tfmmrec.train.fit.train_retrieval`, so the same early stopping on the validation split,
   resumable, with the same training randomness), selected on the validation split's warm items
   when it has cold ones (a cold-start split), else on all;
2. content tower against the frozen query and warm towers (retrieval + alignment loss), selected
   on the content tower's own ranking (every item embedded from content) of the validation
   split's cold items among the cold items only (``cfg.content_selection = "cold_pool"``, the
   default: on ml-latest-small its test cold-pool recall rose from 0.049 to 0.056, 3 seeds) or in
   the full catalog (``"cold"``, where a few dozen hits decide), or of all its items in the full
   catalog when cold ones are fewer than ``MIN_COLD_VALID_SHARE`` of them (a random split);
3. the blend constant ``c`` of ``g(n) = n / (n + c)`` and the cold-score factor ``s`` from the grid
   ``cfg.warm_blend_c`` x ``cfg.cold_scale``, scored on the validation split with the served model
   (precomputed embeddings: seconds). On a random split: the best Recall@K of all items. On a
   cold-start split, by ``cfg.blend_objective`` (:func:`choose_blend`): ``warm_first`` (default)
   the best Recall@K of all items among the candidates that keep warm items within
   ``cfg.blend_warm_tolerance`` of their recall in the warm model alone: warm items do not pay for
   cold ones, cold items get what they win beyond that; ``all`` the best Recall@K of all items;
   ``balanced``: each group is measured against its own reference, the quality it would have
   in a model of its own: warm items against the warm model alone (the stage-1 model, no cold
   item in its index), cold items against the content tower alone (every item embedded from
   content, as a content-only model ranks them). The blend kept is the one whose *worse* group
   is closest to its reference (max over candidates of min(warm / warm_ref, cold / cold_ref)):
   neither group is allowed to pay for the other more than it must. (The mean of the two recalls
   lets warm items take all: on MovieLens a warm item's recall is worth ~20 cold items', and the
   mean picked ``s`` so low that no cold item reached a top 20; a cap on the warm items' loss
   did the same to the cold items of the demo.) ``cfg.blend_objective = "all"`` keeps the best
   Recall@K of all validation items on any split instead: the most relevant items served
   overall, cold items only where they win on merit.

``retrieval.warm_tower: select`` (the default) runs the three stages twice from the same initial
weights, the warm tower with its content part switched on (``id_content``) and off (``id``:
``ItemTower.set_content``), and keeps the served model with the better validation Recall@K of all
items. Neither is best everywhere: on ml-latest-small's random split ``id`` wins on some seeds, on
the demo ``id_content`` on all (benchmarks/README.md, "The warm tower chosen on validation"); it
doubles the training time.

Without validation interactions every stage trains all its epochs and ``c``/``s`` are the first
candidates, with a warning. Training time is the sum of the stages (about twice a single tower's).
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tf_keras as keras

from tfmmrec.config import ConfigError, RetrievalConfig
from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.evaluate.protocol import embed_all, valid_recalls
from tfmmrec.models.build import retrieval_task_options
from tfmmrec.models.coldstart import ContentStudent, WarmColdItemTower, blend_embeddings
from tfmmrec.models.retrieval import TwoTowerRetrieval
from tfmmrec.train.fit import (MIN_COLD_VALID_SHARE, retrieval_optimizer, show_projectors, subrun_callbacks,
                               train_retrieval)

BLEND_OBJECTIVES = ("warm_first", "all", "balanced")
CONTENT_SELECTIONS = ("cold", "cold_pool")
WARM_TOWER_CANDIDATES = ("id_content", "id")


def choose_blend(scores: dict[tuple[float, float], dict[str, float]], objective: str = "all",
                 references: dict[str, float] | None = None, warm_tolerance: float = 0.05) -> tuple[float, float]:
    """The ``(c, s)`` of the blend grid to serve (module docstring, stage 3). ``scores`` maps each
    candidate, in the config's order, to its validation recalls; ties go to the first listed.

    ``references`` (a cold-start split): the warm and cold groups' recalls in models of their own.
    ``objective``: ``all`` = the best recall of all items; ``warm_first`` = the same among the
    candidates whose warm recall is at least ``(1 - warm_tolerance) * references["warm"]`` (none:
    the candidate with the best warm recall);
    ``balanced`` = the best smaller ratio ``min(warm / warm_ref, cold / cold_ref)``. Without
    references (a random split) every objective is ``all``."""
    if objective not in BLEND_OBJECTIVES:
        raise ConfigError(f"retrieval.blend_objective must be one of {BLEND_OBJECTIVES}, got {objective!r}")

    def value(x: float) -> float:
        return -np.inf if np.isnan(x) else x

    def overall(key: tuple[float, float]) -> float:
        return value(scores[key]["all"])
    if references is None or objective == "all":
        return max(scores, key=overall)
    if objective == "warm_first":
        floor = (1.0 - warm_tolerance) * references["warm"]
        allowed = [key for key in scores if value(scores[key]["warm"]) >= floor]
        if not allowed:  # even the smallest s costs warm items more: the blend that costs them least
            return max(scores, key=lambda key: (value(scores[key]["warm"]), overall(key)))
        return max(allowed, key=overall)

    def worse_ratio(key: tuple[float, float]) -> tuple[float, float]:
        ratios = [value(scores[key][g]) / references[g] for g in ("warm", "cold") if references[g] > 0]
        return (min(ratios), overall(key)) if ratios else (overall(key),) * 2
    return max(scores, key=worse_ratio)


def _stage_backup(backup_dir: str | Path | None, stage: str, every: int) -> dict[str, Any]:
    return {} if backup_dir is None else {"backup_dir": Path(backup_dir) / stage, "backup_every_steps": every}


def _metric_k(cfg: RetrievalConfig) -> int:
    return int(cfg.validation_metric.partition("@")[2] or 20)


def train_warm_cold(model: TwoTowerRetrieval, data: EncodedInteractions, cfg: RetrievalConfig, *,
                    seed: int = 0, verbose: int = 2, callbacks: list[keras.callbacks.Callback] | None = None,
                    backup_dir: str | Path | None = None, backup_every_steps: int = 100,
                    jit_compile: bool | None = None) -> keras.callbacks.History:
    """Train ``build_warm_cold``'s model in its three stages (module docstring). ``callbacks``
    (e.g. TensorBoard) see the warm stage; a callback's ``projector`` is called again at the end.
    Returns the warm stage's History; its ``selection`` is the warm stage's (as ``train_retrieval``
    records it) plus ``content`` (the content stage's selection) and ``blend`` (the grid's
    validation recalls, the chosen ``blend_c`` and ``cold_scale``). A run resumed from
    ``backup_dir`` skips finished stages (each has its own backup).

    ``cfg.warm_tower == "select"`` (the default): the three stages run once per candidate of
    ``WARM_TOWER_CANDIDATES`` (the warm tower with content switched on, then off), from the same
    initial weights, and the served model with the better validation Recall@K of all items is
    kept; ``selection["warm_tower"]`` records both. Each candidate has its own backups and
    TensorBoard runs (``<kind>/...``). Without validation rows only ``id_content`` is trained."""
    tower = model.item_tower
    if not isinstance(tower, WarmColdItemTower):
        raise TypeError("train_warm_cold needs a model from build_warm_cold (a WarmColdItemTower item tower)")
    if cfg.blend_objective not in BLEND_OBJECTIVES:
        raise ConfigError(f"retrieval.blend_objective must be one of {BLEND_OBJECTIVES}, got {cfg.blend_objective!r}")
    if cfg.content_selection not in CONTENT_SELECTIONS:
        raise ConfigError(f"retrieval.content_selection must be one of {CONTENT_SELECTIONS}, "
                          f"got {cfg.content_selection!r}")
    tower.set_counts(np.bincount(data.train.item, minlength=data.num_items + 1))
    fit = dict(seed=seed, verbose=verbose, jit_compile=jit_compile, backup_every_steps=backup_every_steps)
    if cfg.warm_tower == "select" and np.any(data.valid.user > 0):
        history = _select_warm_tower(model, data, cfg, callbacks=callbacks, backup_dir=backup_dir, **fit)
    else:
        history = _train_stages(model, data, cfg, callbacks=callbacks, backup_dir=backup_dir, **fit)
    with model.distribute_strategy.scope():  # the served model, compiled as a trained Keras model is: evaluate works
        model.compile(optimizer=retrieval_optimizer(cfg))
    show_projectors(callbacks)  # the TensorBoard projector: the served embeddings, not the warm stage's
    return history


def _select_warm_tower(model: TwoTowerRetrieval, data: EncodedInteractions, cfg: RetrievalConfig, *,
                       callbacks: list[keras.callbacks.Callback] | None, backup_dir: str | Path | None,
                       **fit: Any) -> keras.callbacks.History:
    """``warm_tower: select``: the whole model trained per candidate, the better served model kept.

    The finished model is scored, not the warm stage alone: on the demo the warm stage alone
    preferred ``id``, whose served model then lost to ``id_content`` (0.087 against 0.097 test
    Recall@20), because content in the warm tower also helps the content tower align to it."""
    with model.distribute_strategy.scope():
        model.build_variables()
    initial = model.get_weights()
    warm_tower = model.item_tower.warm_tower
    k = _metric_k(cfg)
    best: tuple[float, str, list[Any], float, keras.callbacks.History] | None = None
    scores: dict[str, float] = {}
    for kind in WARM_TOWER_CANDIDATES:
        model.set_weights(initial)
        warm_tower.set_content(kind == "id_content")
        history = _train_stages(model, data, cfg, callbacks=subrun_callbacks(callbacks, kind),
                                backup_dir=None if backup_dir is None else Path(backup_dir) / kind, **fit)
        users, items = embed_all(model, data)
        scores[kind] = valid_recalls(users, items, data, k)["all"]
        if best is None or scores[kind] > best[0]:  # ties: the first candidate (content on)
            best = (scores[kind], kind, model.get_weights(), model.task.temperature, history)
    assert best is not None
    _, chosen, weights, temperature, history = best
    model.set_weights(weights)
    model.task.temperature = temperature
    history.selection = {**history.selection, "warm_tower": {"chosen": chosen, f"valid_recall@{k}": scores}}
    return history


def _train_stages(model: TwoTowerRetrieval, data: EncodedInteractions, cfg: RetrievalConfig, *,
                  seed: int, verbose: int, jit_compile: bool | None, backup_every_steps: int,
                  callbacks: list[keras.callbacks.Callback] | None,
                  backup_dir: str | Path | None) -> keras.callbacks.History:
    """The three stages (module docstring) on the warm tower as it is (content on or off)."""
    tower = model.item_tower
    options = retrieval_task_options(cfg, data)
    fit = dict(seed=seed, verbose=verbose, jit_compile=jit_compile)
    cold_start = data.cold_valid_share() >= MIN_COLD_VALID_SHARE
    with model.distribute_strategy.scope():
        warm_model = TwoTowerRetrieval(model.query_tower, tower.warm_tower, **options)
    warm_cfg = dataclasses.replace(cfg, validation_objective="warm" if cold_start else cfg.validation_objective)
    history = train_retrieval(warm_model, data, warm_cfg, callbacks=callbacks,
                              **_stage_backup(backup_dir, "warm", backup_every_steps), **fit)

    # The temperature the warm stage chose (retrieval.temperature_candidates) trains the content tower too.
    options["temperature"] = warm_model.task.temperature
    model.task.temperature = warm_model.task.temperature
    cfg = dataclasses.replace(cfg, temperature=warm_model.task.temperature, temperature_candidates=[])
    frozen = [model.query_tower, tower.warm_tower]
    for layer in frozen:
        layer.trainable = False
    try:
        with model.distribute_strategy.scope():
            content_model = ContentStudent(model.query_tower, tower.content_tower, tower.warm_tower,
                                           align_weight=cfg.content_align_weight,
                                           warm_negatives=cfg.content_warm_negatives and not cfg.mixed_negatives,
                                           **options)
        content_cfg = dataclasses.replace(cfg, validation_objective="cold" if cold_start else "all")
        cold_pool = cold_start and cfg.content_selection == "cold_pool"
        if cold_pool:  # the "_cold" validation metrics become the cold pool's
            content_model.restrict_catalog(np.setdiff1d(np.arange(data.num_items), data.train_item_rows))
        content = train_retrieval(content_model, data, content_cfg,
                                  **_stage_backup(backup_dir, "content", backup_every_steps), **fit)
        if cold_pool:
            content_model.restrict_catalog(None)
            content.selection = {**content.selection, "objective": "cold_pool"}
    finally:
        for layer in frozen:
            layer.trainable = True

    blend: dict[str, Any] = {"objective": cfg.blend_objective if cold_start else "all"}
    has_valid = bool(np.any(data.valid.user > 0))
    if has_valid and len(cfg.warm_blend_c) * len(cfg.cold_scale) > 1:
        k = _metric_k(cfg)
        users, warm_emb = embed_all(warm_model, data)
        content_emb = embed_all(content_model, data)[1]
        counts = tower.train_counts.numpy()[1:]
        scores = {(float(c), float(s)): valid_recalls(users, blend_embeddings(warm_emb, content_emb, counts, c, s),
                                                      data, k)
                  for c in cfg.warm_blend_c for s in cfg.cold_scale}
        if cold_start:  # each group alone: the warm model's warm items, the content tower's cold items
            blend["references"] = {"warm": valid_recalls(users, warm_emb, data, k)["warm"],
                                   "cold": valid_recalls(users, content_emb, data, k)["cold"]}
        best_c, best_scale = choose_blend(scores, cfg.blend_objective, blend.get("references"),
                                          cfg.blend_warm_tolerance)
        tower.blend_c.assign(best_c)
        tower.cold_scale.assign(best_scale)
        blend[f"valid_recall@{k}"] = {f"c={c:g} s={s:g}": v for (c, s), v in scores.items()}
    elif not has_valid:
        warnings.warn("warm/cold retrieval: no validation interactions; the blend keeps its first candidates "
                      f"c = {float(tower.blend_c.numpy())}, s = {float(tower.cold_scale.numpy())}", stacklevel=2)
    blend["blend_c"], blend["cold_scale"] = float(tower.blend_c.numpy()), float(tower.cold_scale.numpy())
    history.selection = {**history.selection, "content": content.selection, "blend": blend}
    return history


def train_any_retrieval(model: TwoTowerRetrieval, data: EncodedInteractions, cfg: RetrievalConfig,
                        **kwargs: Any) -> keras.callbacks.History:
    """Train a model of ``build_warm_cold`` (its three stages) or of ``build_retrieval``
    (``train_retrieval``); both return a History whose ``selection`` records what validation chose."""
    if isinstance(model.item_tower, WarmColdItemTower):
        return train_warm_cold(model, data, cfg, **kwargs)
    return train_retrieval(model, data, cfg, **kwargs)
