"""Build and train the warm/cold retrieval model (``tfmmrec.models.coldstart``) in three stages.

1. warm model: the query tower and the warm (id) item tower, the usual retrieval loss; epochs
   selected on the validation split's warm items;
2. content tower against the frozen query and warm towers (retrieval + alignment loss); epochs
   selected on the content tower's own full-catalog ranking (every item embedded from content)
   of the validation split's cold items, or of all its items when cold ones are fewer than
   ``MIN_COLD_VALID_SHARE`` of them (a random split);
3. the blend constant ``c`` of ``g(n) = n / (n + c)`` and the cold-score factor ``s``: the pair of
   ``cfg.warm_blend_c`` x ``cfg.cold_scale`` with the best validation Recall@20 of the served
   model (a grid over precomputed embeddings: seconds): the mean of the warm and the cold items'
   Recall@20 when cold items are at least ``MIN_COLD_VALID_SHARE`` of the validation split (a
   cold-start split: warm items must not take all, nor pay for cold ones), else all items'.

Epochs are the best validation epoch of at most ``cfg.epochs`` (stop after
``cfg.selection_patience`` epochs without improvement). Without validation interactions every
stage trains all its epochs and ``c``/``s`` are the first candidates, with a warning.
Training time is the sum of the stages (about twice a single tower's).
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import tf_keras as keras

from tfmmrec.config import RetrievalConfig
from tfmmrec.evaluate.retrieval import evaluate_retrieval
from tfmmrec.models.coldstart import ContentStudent, WarmColdItemTower, blend_embeddings
from tfmmrec.models.features import ItemFeatures, ItemFeatureTable, UserFeatures
from tfmmrec.models.retrieval import TwoTowerRetrieval
from tfmmrec.models.towers import ItemTower
from tfmmrec.train.fit import _retrieval_task_options, build_query_tower, embed_all, train_retrieval
from tfmmrec.train.inputs import EncodedInteractions

WARM_TOWERS = ("id", "id_content")
MIN_COLD_VALID_SHARE = 0.1


class KeepBestEpoch(keras.callbacks.Callback):
    """Score the model after every epoch with ``score()`` (higher is better), stop after
    ``patience`` epochs without a better score, and put the best epoch's trainable weights back.

    ``curve`` keeps every epoch's score; ``best_epoch`` is 1-based. The score is computed outside
    the training steps (a full-catalog evaluation is a batched pass of its own)."""

    def __init__(self, score: Callable[[], float], patience: int = 3, name: str = "val_score") -> None:
        super().__init__()
        self.score, self.patience, self.name = score, patience, name
        self.curve: list[float] = []
        self.best_epoch, self.best = 0, -np.inf
        self._best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = float(self.score())
        self.curve.append(value)
        if logs is not None:
            logs[self.name] = value
        if value > self.best:
            self.best, self.best_epoch = value, epoch + 1
            self._best_weights = [v.numpy() for v in self.model.trainable_variables]
        elif epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._best_weights is not None:
            for v, w in zip(self.model.trainable_variables, self._best_weights):
                v.assign(w)


def valid_recall(user_emb: np.ndarray, item_emb: np.ndarray, data: EncodedInteractions, group: str = "all",
                 k: int = 20) -> float:
    """Recall@k on the validation split over the full catalog (training items excluded), for the
    held-out items of ``group`` (``all``, ``warm``: with training interactions, ``cold``: without)."""
    known = data.valid.user > 0
    warm = np.zeros(data.num_items, bool)
    warm[data.train_item_rows] = True
    res = evaluate_retrieval(user_emb, item_emb, (data.valid.user[known], data.valid.item[known] - 1),
                             (data.train.user, data.train.item - 1), item_groups={"warm": warm, "cold": ~warm},
                             ks=(k,))
    value = res[group][f"recall@{k}"]
    return 0.0 if np.isnan(value) else float(value)


def build_warm_cold(features: ItemFeatures, num_users: int, cfg: RetrievalConfig, *,
                    data: EncodedInteractions | None = None, users: UserFeatures | None = None) -> TwoTowerRetrieval:
    """A ``TwoTowerRetrieval`` whose item tower is a :class:`WarmColdItemTower`: a warm tower
    (ids; ``cfg.warm_tower == "id_content"``: ids + content, no ID dropout) and a content tower
    (content, categorical and numeric fields, no id) sharing one query tower. ``data`` fills the
    interaction counts (needed before serving) and, as for ``build_retrieval``, histories."""
    if cfg.warm_tower not in WARM_TOWERS:
        raise ValueError(f"retrieval.warm_tower must be one of {WARM_TOWERS}, got {cfg.warm_tower!r}")
    fusion = dict(fusion_hidden=tuple(cfg.fusion_hidden), fusion_dropout=cfg.fusion_dropout,
                  modality_dropout=cfg.modality_dropout, fusion=cfg.fusion,
                  fusion_balance_weight=cfg.fusion_balance_weight)
    cards = tuple(features.cardinalities)
    warm = ItemTower(ItemFeatureTable.from_features(features, name="item_features"), features.num_id_slots,
                     cfg.embedding_dim, cards, use_content=cfg.warm_tower == "id_content", id_dropout=0.0,
                     name="warm_item_tower", **fusion)
    # The content tower never sees an id: every item is on slot 0 (its id part is always zero).
    no_ids = dataclasses.replace(features, id_slot=np.zeros_like(features.id_slot))
    content = ItemTower(ItemFeatureTable.from_features(no_ids, name="content_item_features"), 1, cfg.embedding_dim,
                        cards, use_content=True, id_dropout=0.0, name="content_item_tower", **fusion)
    tower = WarmColdItemTower(warm, content, blend_c=cfg.warm_blend_c[0] if cfg.warm_blend_c else 0.0,
                              cold_scale=cfg.cold_scale[0] if cfg.cold_scale else 1.0, name="item_tower")
    if data is not None:
        tower.set_counts(np.bincount(data.train.item, minlength=data.num_items + 1))
    query = build_query_tower(warm, num_users, cfg, data=data, users=users)
    return TwoTowerRetrieval(query, tower, **_retrieval_task_options(cfg, data))


def _stage_backup(backup_dir: str | Path | None, stage: str, every: int) -> dict[str, Any]:
    return {} if backup_dir is None else {"backup_dir": Path(backup_dir) / stage, "backup_every_steps": every}


def train_warm_cold(model: TwoTowerRetrieval, data: EncodedInteractions, cfg: RetrievalConfig, *,
                    seed: int = 0, verbose: int = 2, callbacks: list[keras.callbacks.Callback] | None = None,
                    backup_dir: str | Path | None = None, backup_every_steps: int = 100,
                    jit_compile: bool | None = None) -> dict[str, Any]:
    """Train ``build_warm_cold``'s model in its three stages (module docstring). ``callbacks``
    (e.g. TensorBoard) see the warm stage; a callback's ``projector`` is called again at the end.
    Returns what was selected: ``{"warm_epochs", "content_epochs", "blend_c", "cold_scale",
    "valid_recall@20": {stage: curve}}``."""
    tower = model.item_tower
    if not isinstance(tower, WarmColdItemTower):
        raise TypeError("train_warm_cold needs a model from build_warm_cold (a WarmColdItemTower item tower)")
    has_valid = bool(np.any(data.valid.user > 0))
    if not has_valid:
        warnings.warn("warm/cold retrieval: no validation interactions; every stage trains all "
                      f"{cfg.epochs} epochs and the blend constant is c = {float(tower.blend_c.numpy())}",
                      stacklevel=2)
    tower.set_counts(np.bincount(data.train.item, minlength=data.num_items + 1))
    options = _retrieval_task_options(cfg, data)
    fit = dict(seed=seed, verbose=verbose, jit_compile=jit_compile)
    out: dict[str, Any] = {"valid_recall@20": {}}

    def select(score: Callable[[], float], name: str) -> list[keras.callbacks.Callback]:
        if not has_valid:
            return []
        keep = KeepBestEpoch(score, cfg.selection_patience, name=f"val_{name}_recall_at_20")
        selectors[name] = keep
        return [keep]

    selectors: dict[str, KeepBestEpoch] = {}
    with model.distribute_strategy.scope():
        warm_model = TwoTowerRetrieval(model.query_tower, tower.warm_tower, **options)

    def warm_score() -> float:
        user, item = embed_all(warm_model, data)
        return valid_recall(user, item, data, "warm")
    train_retrieval(warm_model, data, cfg, callbacks=[*select(warm_score, "warm"), *(callbacks or [])],
                    **_stage_backup(backup_dir, "warm", backup_every_steps), **fit)

    cold_share = np.isin(data.valid.item - 1, data.train_item_rows, invert=True).mean() if has_valid else 0.0
    content_group = "cold" if cold_share >= MIN_COLD_VALID_SHARE else "all"

    def content_score() -> float:
        return valid_recall(*embed_all(content_model, data), data, content_group)

    frozen = [model.query_tower, tower.warm_tower]
    for layer in frozen:
        layer.trainable = False
    try:
        with model.distribute_strategy.scope():
            content_model = ContentStudent(model.query_tower, tower.content_tower, tower.warm_tower,
                                           align_weight=cfg.content_align_weight, **options)
        train_retrieval(content_model, data, cfg, callbacks=select(content_score, "content"),
                        **_stage_backup(backup_dir, "content", backup_every_steps), **fit)
    finally:
        for layer in frozen:
            layer.trainable = True

    for name, keep in selectors.items():
        out[f"{name}_epochs"] = keep.best_epoch
        out["valid_recall@20"][name] = keep.curve
    if has_valid and len(cfg.warm_blend_c) * len(cfg.cold_scale) > 1:
        users, warm_emb = embed_all(warm_model, data)
        content_emb = embed_all(content_model, data)[1]
        counts = tower.train_counts.numpy()[1:]
        groups = ("warm", "cold") if content_group == "cold" else ("all",)

        def served(c: float, sc: float) -> float:  # the mean of warm and cold items' recall on a cold-start split
            item = blend_embeddings(warm_emb, content_emb, counts, c, sc)
            return float(np.mean([valid_recall(users, item, data, g) for g in groups]))
        scores = {(float(c), float(sc)): served(c, sc) for c in cfg.warm_blend_c for sc in cfg.cold_scale}
        out["valid_recall@20"]["blend"] = {f"c={c:g} s={sc:g}": v for (c, sc), v in scores.items()}
        # Ties: the candidate listed first (the config lists the plainest first).
        best_c, best_scale = max(scores, key=scores.get)
        tower.blend_c.assign(best_c)
        tower.cold_scale.assign(best_scale)
    out["blend_c"], out["cold_scale"] = float(tower.blend_c.numpy()), float(tower.cold_scale.numpy())
    for callback in callbacks or []:  # e.g. the TensorBoard projector: show the served embeddings, not the warm stage's
        if getattr(callback, "projector", None) is not None:
            callback.projector()
    return out


def train_any_retrieval(model: TwoTowerRetrieval, data: EncodedInteractions, cfg: RetrievalConfig, *,
                        selection: list[keras.callbacks.Callback] | None = None, **kwargs: Any
                        ) -> dict[str, Any] | keras.callbacks.History:
    """Train a model of ``build_warm_cold`` (its own three stages, returns what they selected) or of
    ``build_retrieval`` (``train_retrieval``, with the ``selection`` callbacks, e.g. a
    :class:`KeepBestEpoch`; the warm/cold model selects its stages itself and ignores them)."""
    if isinstance(model.item_tower, WarmColdItemTower):
        return train_warm_cold(model, data, cfg, **kwargs)
    callbacks = [*(selection or []), *(kwargs.pop("callbacks", None) or [])]
    return train_retrieval(model, data, cfg, callbacks=callbacks, **kwargs)
