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

    def rows(self, keep: np.ndarray) -> SplitArrays:
        """The interactions where the boolean mask ``keep`` is true."""
        pick = lambda a: None if a is None else a[keep]  # noqa: E731
        return SplitArrays(self.user[keep], self.item[keep], pick(self.target), pick(self.time), pick(self.weight))


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

    def cold_valid(self) -> np.ndarray:
        """Which validation interactions are with an item that has no training interaction."""
        return np.isin(self.valid.item - 1, self.train_item_rows, invert=True)

    def cold_valid_share(self) -> float:
        """Share of the validation interactions (of known users) whose item has no training interaction."""
        known = self.valid.user > 0
        return float(self.cold_valid()[known].mean()) if known.any() else 0.0


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


HISTORY_SAMPLINGS = ("before", "others")


def user_histories(split: SplitArrays, num_users: int, length: int, sampling: str = "before", seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Users' items as padded item indices (0 = padding, left-padded), never an example's target.

    Returns ``(per_interaction, per_user)``: ``per_interaction[j]`` is what training example j's
    query sees, ``per_user[u]`` (row 0 empty) what user index u's query is served and evaluated
    with. ``sampling`` decides which of the user's items they hold, and must match how held-out
    items relate to the training ones:

    - ``"before"``: the up-to-``length`` items the user consumed before interaction j (by
      timestamp, else in log order), most recent last; per user, the last ``length``. Right for a
      temporal split and for serving the latest items: the next item is predicted from the
      preceding ones.
    - ``"others"``: ``length`` of the user's other items of the split, drawn at random with
      replacement (all of them, once, if they are no more); per user, ``length`` of their items
      without replacement (``seed``). Right for random and cold-start splits, whose held-out items
      lie anywhere in the user's timeline: trained on "before", the query learns what comes next,
      then is evaluated with the user's last items on items that came earlier (measured:
      benchmarks/README.md, "Quality").
    """
    if sampling not in HISTORY_SAMPLINGS:
        raise ValueError(f"history sampling must be one of {HISTORY_SAMPLINGS}, got {sampling!r}")
    n = len(split)
    timed = sampling == "before" and split.time is not None
    order = np.lexsort((split.time, split.user)) if timed else np.argsort(split.user, kind="stable")
    users, items = split.user[order], split.item[order]
    first = np.zeros(n, np.int64)  # position of each user's first interaction, in sorted order
    count = np.zeros(n, np.int64)
    if n:
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        sizes = np.diff(np.r_[starts, n])
        first, count = np.repeat(starts, sizes), np.repeat(sizes, sizes)
    rng = np.random.default_rng(seed)
    position = np.arange(n) - first  # rank of each interaction within its user
    if sampling == "before":
        back = np.arange(length, 0, -1)[None, :]  # slot s holds the item `length - s` steps back
        offset = position[:, None] - back
    else:
        others = count[:, None] - 1
        few = others <= length
        right_aligned = np.arange(length)[None, :] - (length - others)  # 0..others-1, negative = padding
        drawn = (rng.random((n, length)) * np.maximum(others, 1)).astype(np.int64)
        offset = np.where(few, right_aligned, drawn)
        offset = np.where(offset >= position[:, None], offset + 1, offset)  # skip the example's own item
    valid = offset >= 0
    sorted_history = np.where(valid, items[np.clip(first[:, None] + offset, 0, max(n - 1, 0))], 0).astype(np.int32)
    per_interaction = np.empty_like(sorted_history)
    per_interaction[order] = sorted_history
    per_user = np.zeros((num_users + 1, length), np.int32)
    if not n:
        return per_interaction, per_user
    if sampling == "before":
        last = np.r_[users[1:] != users[:-1], True]  # each user's last interaction: its history + itself
        per_user[users[last]] = np.concatenate([sorted_history[last], items[last][:, None]], axis=1)[:, 1:]
    else:  # a random order within each user, its first `length` kept, right-aligned
        shuffled = np.lexsort((rng.random(n), users))
        keep = position < length  # users are sorted the same way, so ranks within a user carry over
        column = length - np.minimum(count, length) + position
        per_user[users[keep], column[keep]] = items[shuffled][keep]
    return per_interaction, per_user
