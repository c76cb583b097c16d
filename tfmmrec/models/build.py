"""Models from their config sections: one builder per model family.

Each builder takes its config section whole (``RetrievalConfig``, ``RankingConfig``,
``MultitaskConfig``) and the data it fills tables from: the item features
(``tfmmrec.models.features``), the training interactions (histories, item frequencies for logQ,
the negatives' pool, interaction counts) and the users table. Build under ``strategy.scope()``
to train distributed; train with ``tfmmrec.train``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tfmmrec.config import ConfigError, MultitaskConfig, RankingConfig, RetrievalConfig
from tfmmrec.data.interactions import HISTORY_SAMPLINGS, EncodedInteractions, user_histories
from tfmmrec.fusion import FUSIONS, fusion_options
from tfmmrec.models.coldstart import WarmColdItemTower
from tfmmrec.models.dcn import DCN
from tfmmrec.models.features import ItemFeatures, ItemFeatureTable, UserFeatures
from tfmmrec.models.mf import MatrixFactorization
from tfmmrec.models.multitask import MultitaskRetrieval
from tfmmrec.models.ranking import DeepFM
from tfmmrec.models.retrieval import TwoTowerRetrieval
from tfmmrec.models.towers import ItemTower, QueryTower

ITEM_REPRESENTATIONS = ("warm_cold", "joint")
WARM_TOWERS = ("select", "id_content", "id")


def build_retrieval(features: ItemFeatures, num_users: int, cfg: RetrievalConfig, *,
                    use_content: bool = True, data: EncodedInteractions | None = None,
                    users: UserFeatures | None = None) -> TwoTowerRetrieval:
    """The two-tower model of ``cfg``. ``data`` (the training interactions) is needed for user
    histories and mixed negatives; ``users`` for user features (``cfg.user_features``)."""
    if (cfg.history_length or cfg.mixed_negatives) and data is None:
        raise ValueError("retrieval.history_length and retrieval.mixed_negatives need the training data (data=...)")
    if not use_content:
        features = features.with_full_id_vocabulary()
    table = ItemFeatureTable.from_features(features, name="item_features")
    item_tower = ItemTower(table, features.num_id_slots, cfg.embedding_dim, tuple(features.cardinalities),
                           use_content=use_content, id_dropout=cfg.id_dropout, embedding_dropout=cfg.embedding_dropout,
                           name="item_tower", **fusion_kwargs(cfg))
    query_tower = build_query_tower(item_tower, num_users, cfg, data=data, users=users)
    return TwoTowerRetrieval(query_tower, item_tower, **retrieval_task_options(cfg, data))


def fusion_kwargs(cfg: RetrievalConfig) -> dict[str, Any]:
    """The item tower's fusion settings from ``cfg``; ``fusion_options`` checked against what the
    chosen layer takes (``tfmmrec.fusion.fusion_options``), so a typo stops before anything is built."""
    if cfg.fusion not in FUSIONS:
        raise ConfigError(f"retrieval.fusion: {cfg.fusion!r} is not one of {sorted(FUSIONS)}")
    unknown = sorted(set(cfg.fusion_options) - set(fusion_options(cfg.fusion)))
    if unknown:
        raise ConfigError(f"retrieval.fusion_options.{unknown[0]}: fusion {cfg.fusion!r} has no such option; its "
                          f"options: {fusion_options(cfg.fusion)}")
    return dict(fusion_hidden=tuple(cfg.fusion_hidden), fusion_dropout=cfg.fusion_dropout,
                modality_dropout=cfg.modality_dropout, fusion=cfg.fusion,
                fusion_balance_weight=cfg.fusion_balance_weight, fusion_options=dict(cfg.fusion_options))


def retrieval_task_options(cfg: RetrievalConfig, data: EncodedInteractions | None) -> dict[str, Any]:
    """The loss and negatives options ``TwoTowerRetrieval`` (and the multitask model) take from ``cfg``."""
    return dict(temperature=cfg.temperature, logq=cfg.logq, logq_weight=cfg.logq_weight,
                remove_accidental_hits=cfg.remove_accidental_hits,
                num_hard_negatives=cfg.num_hard_negatives, mixed_negatives=cfg.mixed_negatives,
                item_prob=None if data is None else data.item_prob,
                negative_pool=None if data is None else np.unique(data.train.item),
                adversarial_epsilon=cfg.adversarial_epsilon, adversarial_weight=cfg.adversarial_weight)


def build_multitask(features: ItemFeatures, num_users: int, cfg: RetrievalConfig, mt: MultitaskConfig, *,
                    data: EncodedInteractions, users: UserFeatures | None = None,
                    rating: bool = False) -> MultitaskRetrieval:
    """The multitask model: ``cfg``'s two towers and negatives, plus ``mt``'s heads and loss weights.
    Train it with :func:`train_retrieval`."""
    if mt.category_weight and not 0 <= mt.category_field < len(features.cardinalities):
        raise ValueError(f"multitask.category_field={mt.category_field}: the items have "
                         f"{len(features.cardinalities)} categorical column(s); set multitask.category_weight=0")
    base = build_retrieval(features, num_users, cfg, data=data, users=users)
    return MultitaskRetrieval(
        base.query_tower, base.item_tower, num_categories=features.cardinalities[mt.category_field]
        if features.cardinalities else 1, category_field=mt.category_field, retrieval_weight=mt.retrieval_weight,
        ranking_weight=mt.ranking_weight, category_weight=mt.category_weight,
        ranking_hidden=tuple(mt.ranking_hidden), rating=rating, **retrieval_task_options(cfg, data))


def build_query_tower(item_tower: ItemTower, num_users: int, cfg: RetrievalConfig, *,
                      data: EncodedInteractions | None = None, users: UserFeatures | None = None) -> QueryTower:
    """User id (+ user features + pooled history through ``item_tower``), tables filled from ``data``."""
    if cfg.history_sampling not in HISTORY_SAMPLINGS:
        raise ConfigError(f"retrieval.history_sampling must be one of {', '.join(HISTORY_SAMPLINGS)}, "
                          f"got {cfg.history_sampling!r}")
    cards = tuple(users.cardinalities) if users is not None and cfg.user_features else ()
    tower = QueryTower(num_users, cfg.embedding_dim, user_feature_cardinalities=cards,
                       history_length=cfg.history_length, history_pooling=cfg.history_pooling,
                       history_encoder=item_tower if cfg.history_length else None,
                       user_id_dropout=cfg.user_id_dropout, embedding_dropout=cfg.embedding_dropout, name="query_tower")
    history = None
    if cfg.history_length and data is not None:
        history = user_histories(data.train, num_users, cfg.history_length, cfg.history_sampling)[1]
    tower.set_user_tables(users.codes if cards else None, history)  # type: ignore[union-attr]
    return tower


def build_ranking(features: ItemFeatures, num_users: int, cfg: RankingConfig, *, use_content: bool = True,
                  users: UserFeatures | None = None, rating: bool = False,
                  data: EncodedInteractions | None = None) -> DeepFM:
    """DCN-v2 (``cfg.ranker(rating) == "dcn"``), DeepFM, or a biased matrix factorisation over ids
    only (``"mf"``, :class:`tfmmrec.models.mf.MatrixFactorization`): same inputs and outputs.
    ``users`` (with ``cfg.user_features``): the users table's columns become fields too. ``rating``:
    the model will learn ratings (its dropout default, :meth:`RankingConfig.deep_dropout`).
    ``data``: fills the history field's table from its training split (``cfg.history_length``)."""
    if cfg.history_length < 0:
        raise ConfigError(f"ranking.history_length must be >= 0, got {cfg.history_length}")
    kind = cfg.ranker(rating)
    table = ItemFeatureTable.from_features(features, name="item_features")
    use_content = use_content and (kind != "mf" or cfg.mf_content)
    with_users = users is not None and cfg.user_features and use_content
    user_kwargs = dict(user_feature_cardinalities=tuple(users.cardinalities) if with_users else (),  # type: ignore[union-attr]
                       num_user_numeric=users.numeric.shape[1] if with_users else 0,  # type: ignore[union-attr]
                       history_length=cfg.history_length)
    dropout = cfg.deep_dropout(rating)
    if kind == "dcn":
        model: DeepFM = DCN(table, num_users, features.num_id_slots, tuple(features.cardinalities), cfg.field_dim,
                            tuple(cfg.hidden_units), dropout, use_content=use_content,
                            id_dropout=cfg.id_dropout, cross_layers=cfg.cross_layers,
                            projection_dim=cfg.cross_projection_dim, name="dcn", **user_kwargs)
    elif kind == "mf":
        model = MatrixFactorization(table, num_users, features.num_id_slots, tuple(features.cardinalities),
                                    factors=cfg.mf_factors, l2=cfg.mf_l2, use_content=use_content,
                                    content_hidden=cfg.mf_content_hidden, name="mf", **user_kwargs)
    elif kind == "deepfm":
        model = DeepFM(table, num_users, features.num_id_slots, tuple(features.cardinalities), cfg.field_dim,
                       tuple(cfg.hidden_units), dropout, use_content=use_content, id_dropout=cfg.id_dropout,
                       name="deepfm", **user_kwargs)
    else:
        raise ValueError(f"ranking.model must be 'dcn', 'deepfm' or 'mf', got {kind!r}")
    if with_users:
        model.set_user_tables(users.codes, users.numeric)  # type: ignore[union-attr]
    if model.history_length and data is not None:
        model.set_user_history(user_histories(data.train, num_users, cfg.history_length, "others")[1])
    return model



def build_warm_cold(features: ItemFeatures, num_users: int, cfg: RetrievalConfig, *,
                    data: EncodedInteractions | None = None, users: UserFeatures | None = None) -> TwoTowerRetrieval:
    """A ``TwoTowerRetrieval`` whose item tower is a :class:`WarmColdItemTower`: a warm tower
    (ids; ``cfg.warm_tower == "id_content"``: ids + content, no ID dropout; ``"select"``: ids +
    content behind a switch, so training can keep either, see ``tfmmrec.train.coldstart``) and a content tower
    (content, categorical and numeric fields, no id) sharing one query tower. ``data`` fills the
    interaction counts (needed before serving) and, as for ``build_retrieval``, histories."""
    if cfg.warm_tower not in WARM_TOWERS:
        raise ConfigError(f"retrieval.warm_tower must be one of {WARM_TOWERS}, got {cfg.warm_tower!r}")
    fusion = fusion_kwargs(cfg)
    cards = tuple(features.cardinalities)
    warm = ItemTower(ItemFeatureTable.from_features(features, name="item_features"), features.num_id_slots,
                     cfg.embedding_dim, cards, use_content=cfg.warm_tower != "id", id_dropout=0.0,
                     content_switch=cfg.warm_tower == "select",
                     embedding_dropout=cfg.embedding_dropout, name="warm_item_tower", **fusion)
    # The content tower never sees an id: every item is on slot 0 (its id part is always zero).
    no_ids = dataclasses.replace(features, id_slot=np.zeros_like(features.id_slot))
    content = ItemTower(ItemFeatureTable.from_features(no_ids, name="content_item_features"), 1, cfg.embedding_dim,
                        cards, use_content=True, id_dropout=0.0, name="content_item_tower", **fusion)
    tower = WarmColdItemTower(warm, content, blend_c=cfg.warm_blend_c[0] if cfg.warm_blend_c else 0.0,
                              cold_scale=cfg.cold_scale[0] if cfg.cold_scale else 1.0, name="item_tower")
    if data is not None:
        tower.set_counts(np.bincount(data.train.item, minlength=data.num_items + 1))
    query = build_query_tower(warm, num_users, cfg, data=data, users=users)
    return TwoTowerRetrieval(query, tower, **retrieval_task_options(cfg, data))


def build_retrieval_model(features: ItemFeatures, data: EncodedInteractions, cfg: RetrievalConfig, *,
                          use_content: bool, users: UserFeatures | None = None,
                          multitask: MultitaskConfig | None = None, rating: bool = False) -> TwoTowerRetrieval:
    """The retrieval model ``cfg`` describes: with content, a warm/cold model
    (``cfg.item_representation == "warm_cold"``, :func:`build_warm_cold`) or one joint item tower
    (:func:`build_retrieval`); ``multitask`` (its config) adds the multitask heads
    (:func:`build_multitask`; ``rating``: the log's target is a rating)."""
    if use_content and multitask is None and cfg.item_representation == "warm_cold":
        return build_warm_cold(features, data.num_users, cfg, data=data, users=users)
    if cfg.item_representation not in ITEM_REPRESENTATIONS:
        raise ConfigError(f"retrieval.item_representation: {cfg.item_representation!r} is not one of "
                          f"{sorted(ITEM_REPRESENTATIONS)}")
    if multitask is not None:
        return build_multitask(features, data.num_users, cfg, multitask, data=data, users=users, rating=rating)
    return build_retrieval(features, data.num_users, cfg, use_content=use_content, data=data, users=users)
