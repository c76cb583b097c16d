"""Interactions grouped by user: the compressed-sparse-row layout both evaluation paths use.

``tfmmrec.evaluate.retrieval`` (numpy/TF full-catalog metrics) and
``tfmmrec.train.eval_inputs`` (Keras validation batches) need, per user row, the held-out and
excluded item rows; this is the one place that builds it.
"""
from __future__ import annotations

import numpy as np


def rows_per_user(users: np.ndarray, items: np.ndarray, num_user_rows: int, *, unique: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr [num_user_rows + 1], items)``: user ``u``'s item rows are
    ``items[indptr[u]:indptr[u + 1]]``, sorted; ``unique`` keeps distinct (user, item) pairs only."""
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    if unique and len(users):
        pairs = np.unique(np.stack([users, items], 1), axis=0)
        users, items = pairs[:, 0], pairs[:, 1]
    order = np.lexsort((items, users))
    indptr = np.zeros(num_user_rows + 1, np.int64)
    np.add.at(indptr, users + 1, 1)
    return np.cumsum(indptr), items[order]
