"""A dataset made ready to train on: loaded, split, encoded (and aligned), as model inputs.

The one implementation of these steps, used by ``tfmmrec.run``, the re-evaluation and re-export
of a saved run and ``tune``, so each sees exactly the run's data.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfmmrec.config import RunConfig
from tfmmrec.data.interactions import EncodedInteractions, encode_interactions
from tfmmrec.data.loader import Dataset, load_dataset
from tfmmrec.data.manifest import DatasetError
from tfmmrec.data.splits import split_interactions
from tfmmrec.encoders.align import add_aligned_modality
from tfmmrec.encoders.encode import ItemContent, encode_catalog
from tfmmrec.models.build import build_ranking, build_retrieval_model
from tfmmrec.models.features import build_item_features, build_user_features


@dataclass
class PreparedData:
    """A dataset loaded, split, encoded and turned into model inputs, as ``run`` does it."""

    dataset: Dataset
    data: EncodedInteractions        # retrieval (positives)
    rank_data: EncodedInteractions   # ranking (with 0/1 labels where the log has them)
    features: Any                    # models.features.ItemFeatures
    mode: str                        # rating | label | implicit
    has_content: bool
    content: ItemContent | None = None


def prepare_data(dataset_dir: str | Path, cfg: RunConfig, *, dataset: Dataset | None = None,
                 verbose: int = 0, log: Callable[[str], None] | None = None) -> PreparedData:
    """Load -> split -> encode (-> align) -> features with ``cfg``: the one implementation of these
    steps, used by ``run``, ``load_run`` and ``tune``, so a re-evaluation or a tuning trial sees
    exactly the run's data. ``log`` receives the data, encode and decode report lines."""
    say = log or (lambda _msg: None)
    ds = dataset or load_dataset(dataset_dir, on_unknown_items=cfg.data.on_unknown_items)  # type: ignore[arg-type]
    for line in ds.report.lines():
        say(f"[data] {line}")
    s = cfg.split
    inter = split_interactions(ds.interactions, s.strategy, valid_frac=s.valid_frac, test_frac=s.test_frac,  # type: ignore[arg-type]
                               cold_item_frac=s.cold_item_frac, seed=s.seed)
    target = "rating" if "rating" in inter.columns else ("label" if "label" in inter.columns else None)
    mode = target or "implicit"
    positives = inter[inter["label"] > 0] if mode == "label" else inter  # retrieval learns from positives
    data = encode_interactions(positives, ds.num_items, target)
    if not len(data.train):
        raise DatasetError(f"{ds.root}: no training interactions after the split (split.strategy={s.strategy!r}; "
                           "weight 0 rows and label 0 rows do not train retrieval)")
    # Retrieval learns from positives only; ranking with 0/1 labels also learns from the 0s.
    rank_data = data if mode != "label" else encode_interactions(inter, ds.num_items, target)
    say(f"[data] {ds.manifest.name}: {ds.num_items} items, {data.num_users} users with training data, "
        f"interactions train/valid/test = {len(data.train)}/{len(data.valid)}/{len(data.test)}")
    content: ItemContent | None = None
    if ds.manifest.modalities:
        say(f"[encode] modalities: {', '.join(ds.manifest.modalities)}")
        content = encode_catalog(ds, encoders=cfg.encoders, progress=verbose > 0, limits=cfg.limits)
        for report in content.reports:
            say(f"[decode] {report.summary()}")
        if cfg.pretrain.enabled:  # cross-modal alignment -> one more content modality, "aligned"
            content = add_aligned_modality(ds, content, cfg.pretrain, verbose=verbose > 0, reseed=cfg.seed)[0]
    features = build_item_features(ds, content, data.train_item_rows)
    has_content = bool(features.content) or features.categorical.shape[1] > 0 or features.numeric.shape[1] > 0
    return PreparedData(ds, data, rank_data, features, mode, has_content, content)


def user_features(prep: PreparedData, data: EncodedInteractions | None = None) -> Any:
    """The users table as model inputs for ``data``'s user indices (default ``prep.data``); the
    manifest's ``user_numeric`` columns numeric, the others categorical."""
    return build_user_features(prep.dataset.users, (data or prep.data).user_ids,
                               numeric_columns=prep.dataset.manifest.user_numeric)


def retrieval_model(prep: PreparedData, cfg: RunConfig, use_content: bool, *, multitask: bool = False) -> Any:
    """The retrieval (or multitask) model ``cfg`` describes, built on ``prep``'s data and users."""
    return build_retrieval_model(prep.features, prep.data, cfg.retrieval, use_content=use_content,
                                 users=user_features(prep), multitask=cfg.multitask if multitask else None,
                                 rating=prep.mode == "rating")


def ranking_model(prep: PreparedData, cfg: RunConfig) -> Any:
    """The ranker ``cfg.ranking`` describes, on ``prep``'s ranking data and users."""
    return build_ranking(prep.features, prep.rank_data.num_users, cfg.ranking, use_content=prep.has_content,
                         users=user_features(prep, prep.rank_data), rating=prep.mode == "rating",
                         data=prep.rank_data)
