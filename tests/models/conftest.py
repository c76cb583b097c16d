"""A small, fully known item table and interaction log shared by the model tests (read-only)."""
from __future__ import annotations

import numpy as np
import pytest

from tfmmrec.data.interactions import EncodedInteractions, SplitArrays
from tfmmrec.models.features import ItemFeatures

NUM_ITEMS, NUM_USERS = 40, 30


@pytest.fixture(scope="module")
def features() -> ItemFeatures:
    """40 items in 4 clusters; items 31..40 never seen in training (id slot 0)."""
    rng = np.random.default_rng(0)
    cluster = np.arange(NUM_ITEMS) % 4
    centers = rng.standard_normal((4, 6))
    text = np.vstack([np.zeros((1, 6)), centers[cluster] + 0.1 * rng.standard_normal((NUM_ITEMS, 6))])
    text_mask = np.ones(NUM_ITEMS + 1, np.float32)
    text_mask[0] = 0
    id_slot = np.zeros(NUM_ITEMS + 1, np.int32)
    id_slot[1:31] = np.arange(1, 31)
    categorical = np.concatenate([[[0]], (cluster[:, None] + 1)]).astype(np.int32)
    return ItemFeatures({"text": text.astype(np.float32)}, {"text": text_mask}, id_slot, categorical, [5],
                        np.zeros((NUM_ITEMS + 1, 0), np.float32))


@pytest.fixture(scope="module")
def interactions() -> EncodedInteractions:
    """Each user likes one cluster; training covers items 1..30 only."""
    rng = np.random.default_rng(1)
    users, items = [], []
    for u in range(1, NUM_USERS + 1):
        liked = [i for i in range(1, 31) if (i - 1) % 4 == u % 4]
        users += [u] * len(liked)
        items += liked
    users, items = np.array(users, np.int32), np.array(items, np.int32)
    prob = np.bincount(items, minlength=NUM_ITEMS + 1) / len(items)
    prob[prob == 0] = 1 / len(items)
    empty = SplitArrays(np.zeros(0, np.int32), np.zeros(0, np.int32), None)
    order = rng.permutation(len(users))
    return EncodedInteractions(np.array([f"u{u}" for u in range(1, NUM_USERS + 1)]), NUM_ITEMS,
                               SplitArrays(users[order], items[order], None), empty, empty, prob.astype(np.float32))
