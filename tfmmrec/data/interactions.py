"""Interactions as model indices: ids mapped once, in numpy, per split.

Users get indices 1..U in training-id order (0 = a user without training interactions); items
are dataset rows + 1 (0 = padding). Every later stage (models, evaluation, training) sees only
these integer arrays; string lookups on every step are a large share of a naive pipeline's time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class SplitArrays:
    """One split's interactions as model indices (users: 0 = not in training; items: row + 1)."""

    user: np.ndarray
    item: np.ndarray
    target: np.ndarray | None  # rating or label, when the log has one
    time: np.ndarray | None = None  # timestamps, when the log has them (orders users' histories)
    weight: np.ndarray | None = None  # per-interaction sample weight (manifest key ``weight``), > 0

    def __len__(self) -> int:
        return len(self.user)


@dataclass
class EncodedInteractions:
    user_ids: np.ndarray         # user_ids[i] has model index i + 1
    num_items: int
    train: SplitArrays
    valid: SplitArrays
    test: SplitArrays
    item_prob: np.ndarray        # [num_items + 1]: share of training interactions per item index

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def train_item_rows(self) -> np.ndarray:
        return self.train.item - 1


def encode_interactions(interactions: pd.DataFrame, num_items: int, target: str | None = None) -> EncodedInteractions:
    """``interactions`` has user_id, item_idx (dataset row) and split columns, and optionally a
    ``weight`` column: each training example's weight in every loss. Training rows of weight 0
    are dropped here, so they have no effect at all (not even as another query's in-batch
    negative, nor on the item frequencies behind logQ)."""
    train_df = interactions[interactions["split"] == "train"]
    if "weight" in train_df.columns:
        train_df = train_df[train_df["weight"].to_numpy(np.float64) > 0]
    user_ids = np.sort(train_df["user_id"].unique())
    vocab = pd.Index(user_ids)

    def arrays(df: pd.DataFrame) -> SplitArrays:
        return SplitArrays(user=(vocab.get_indexer(df["user_id"]) + 1).astype(np.int32),
                           item=(df["item_idx"].to_numpy() + 1).astype(np.int32),
                           target=df[target].to_numpy(np.float32) if target else None,
                           time=df["timestamp"].to_numpy() if "timestamp" in df.columns else None,
                           weight=df["weight"].to_numpy(np.float32) if "weight" in df.columns else None)

    train = arrays(train_df)
    counts = np.bincount(train.item, minlength=num_items + 1).astype(np.float64)
    prob = (counts / max(counts.sum(), 1.0)).astype(np.float32)
    prob[prob == 0] = 1.0 / max(counts.sum(), 1.0)  # never log(0); such items never appear as candidates
    return EncodedInteractions(user_ids, num_items, train, arrays(interactions[interactions["split"] == "valid"]),
                               arrays(interactions[interactions["split"] == "test"]), prob)


def user_histories(split: SplitArrays, num_users: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Users' recent items, as padded item indices (0 = padding, most recent last).

    Returns ``(per_interaction, per_user)``: ``per_interaction[j]`` holds the up-to-``length`` items
    the user of interaction j consumed *before* it (by timestamp, else in log order), never
    interaction j's own item, so a training example cannot see its target; ``per_user[u]`` holds
    user index u's last ``length`` items of the split (row 0 empty), the history a query is
    served with.
    """
    n = len(split)
    order = np.lexsort((split.time, split.user)) if split.time is not None else np.argsort(split.user, kind="stable")
    users, items = split.user[order], split.item[order]
    position = np.arange(n)
    first = np.zeros(n, np.int64)  # position of each user's first interaction, in sorted order
    if n:
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        first = np.repeat(starts, np.diff(np.r_[starts, n]))
    sorted_history = np.zeros((n, length), np.int32)
    for back in range(1, length + 1):
        source = position - back
        valid = source >= first
        sorted_history[:, length - back] = np.where(valid, items[np.maximum(source, 0)], 0)
    per_interaction = np.empty_like(sorted_history)
    per_interaction[order] = sorted_history
    per_user = np.zeros((num_users + 1, length), np.int32)
    if n:
        last = np.r_[users[1:] != users[:-1], True]  # each user's last interaction: its history + itself
        full = np.concatenate([sorted_history[last], items[last][:, None]], axis=1)[:, 1:]
        per_user[users[last]] = full
    return per_interaction, per_user
