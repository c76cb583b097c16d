"""Train/valid/test splits of an interaction log.

Four strategies, because they answer different questions:

- ``predefined``: the log's own ``split`` column (MMRec's x_label, a user's own protocol).
- ``random``: each interaction independently, as the TFRS tutorials do; measures how well
  held-out interactions of known users and items are recovered.
- ``temporal``: per user, the last interaction is test and the one before it valid
  (leave-last-out); closer to production, where the future is predicted from the past.
- ``cold_start``: a fraction of items is held out entirely, with all their interactions,
  half of those items for validation and half for test; the remaining interactions are split
  at random. The test set then holds both warm items and items the model never saw in
  training, which is the case content features exist for.
"""
from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from tfmmrec.data.manifest import DatasetError

Strategy = Literal["auto", "predefined", "random", "temporal", "cold_start"]


def split_interactions(interactions: pd.DataFrame, strategy: Strategy = "auto", *,
                       valid_frac: float = 0.1, test_frac: float = 0.1,
                       cold_item_frac: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """Return a copy of ``interactions`` with a ``split`` column in {train, valid, test}.

    ``auto`` keeps a predefined ``split`` column when there is one and is ``random`` otherwise.
    """
    if not 0 <= valid_frac + test_frac < 1:
        raise ValueError(f"valid_frac + test_frac must be in [0, 1), got {valid_frac} + {test_frac}")
    has_split = "split" in interactions.columns
    if strategy == "auto":
        strategy = "predefined" if has_split else "random"
    out = interactions.copy()
    rng = np.random.default_rng(seed)
    if strategy == "predefined":
        if not has_split:
            raise DatasetError("split strategy 'predefined' needs a 'split' column in the interactions table")
        return out
    if strategy == "random":
        out["split"] = _random_labels(len(out), valid_frac, test_frac, rng)
    elif strategy == "temporal":
        if "timestamp" not in out.columns:
            raise DatasetError("split strategy 'temporal' needs a timestamp column (manifest key 'timestamp')")
        out["split"] = _leave_last_out(out)
    elif strategy == "cold_start":
        out["split"] = _cold_start_labels(out, valid_frac, test_frac, cold_item_frac, rng)
    else:
        raise ValueError(f"unknown split strategy {strategy!r}")
    return out


def _random_labels(n: int, valid_frac: float, test_frac: float, rng: np.random.Generator) -> np.ndarray:
    u = rng.random(n)
    return np.where(u < test_frac, "test", np.where(u < test_frac + valid_frac, "valid", "train"))


def _leave_last_out(df: pd.DataFrame) -> np.ndarray:
    # Stable sort keeps file order among equal timestamps, so ties split deterministically.
    # Work on positions, not index labels: a caller's frame may have a repeated index.
    positional = df[["user_id", "timestamp"]].reset_index(drop=True)
    order = positional.sort_values(["user_id", "timestamp"], kind="stable")
    rank_from_end = order.groupby("user_id", sort=False).cumcount(ascending=False).to_numpy()
    count = order.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    labels = np.where((rank_from_end == 0) & (count >= 3), "test",
                      np.where((rank_from_end == 1) & (count >= 3), "valid", "train"))
    out = np.empty(len(df), dtype=object)
    out[order.index.to_numpy()] = labels
    return out.astype(str)


def _cold_start_labels(df: pd.DataFrame, valid_frac: float, test_frac: float, cold_item_frac: float,
                       rng: np.random.Generator) -> np.ndarray:
    items = np.sort(df["item_id"].unique())
    n_cold = int(round(cold_item_frac * len(items)))
    cold = rng.permutation(items)[:n_cold]
    cold_test = set(cold[: n_cold // 2])
    cold_valid = set(cold[n_cold // 2:])
    labels = _random_labels(len(df), valid_frac, test_frac, rng)
    item = df["item_id"].to_numpy()
    labels = np.where(np.isin(item, list(cold_test)), "test", labels)
    labels = np.where(np.isin(item, list(cold_valid)), "valid", labels)
    return labels
