"""Full-catalog retrieval metrics: Recall@K and NDCG@K with seen items excluded.

Protocol (the same everywhere in tfmmrec, so numbers are comparable across runs):

- users: those with at least one held-out (test or valid) interaction with an item of the group;
- candidates: every item of the catalog, minus the user's ``exclude`` items (training items,
  and for test also validation items): recommending what the user already has is no success;
- Recall@K = hits in the top K / number of the user's held-out items (in the group);
- NDCG@K with binary relevance, ideal DCG over min(K, number of held-out items);
- averaged over users. Groups: ``all``, and ``warm``/``cold`` = held-out items with / without
  training interactions; all groups rank against the same full catalog.

Scoring is a batched matrix product and ``tf.math.top_k``: no Python loop over users.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

DEFAULT_KS = (10, 20, 50)


def _csr(users: np.ndarray, items: np.ndarray, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((items, users))
    indptr = np.zeros(num_users + 1, np.int64)
    np.add.at(indptr, users + 1, 1)
    return np.cumsum(indptr), items[order]


def evaluate_retrieval(user_embeddings: np.ndarray, item_embeddings: np.ndarray,
                       heldout: tuple[np.ndarray, np.ndarray], exclude: tuple[np.ndarray, np.ndarray],
                       *, item_groups: dict[str, np.ndarray] | None = None,
                       ks: tuple[int, ...] = DEFAULT_KS, batch_size: int | None = None) -> dict[str, dict[str, float]]:
    """Rank all items for every user with held-out items and score the ranking.

    Args:
      user_embeddings: ``[num_users, d]``; row u is user u.
      item_embeddings: ``[num_items, d]``; row i is item i.
      heldout: ``(user_rows, item_rows)`` of the interactions to recover.
      exclude: ``(user_rows, item_rows)`` that must not be recommended.
      item_groups: name -> boolean ``[num_items]``; ``all`` is always added.
    Returns:
      ``{group: {"recall@K": ..., "ndcg@K": ..., "users": n}}``.
    """
    num_users, num_items = len(user_embeddings), len(item_embeddings)
    groups = {"all": np.ones(num_items, bool), **(item_groups or {})}
    max_k = min(max(ks), num_items)
    h_ptr, h_items = _csr(*heldout, num_users)
    e_ptr, e_items = _csr(*exclude, num_users)
    eval_users = np.flatnonzero(np.diff(h_ptr) > 0)
    batch_size = batch_size or max(1, min(1024, 20_000_000 // max(num_items, 1)))
    sums = {g: {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg")} for g in groups}
    counts = {g: 0 for g in groups}
    discounts = 1.0 / np.log2(np.arange(2, max_k + 2))
    items_t = tf.constant(item_embeddings, tf.float32)
    for start in range(0, len(eval_users), batch_size):
        users = eval_users[start:start + batch_size]
        scores = tf.matmul(tf.constant(user_embeddings[users], tf.float32), items_t, transpose_b=True)
        ex_rows, ex_cols = _rows_cols(users, e_ptr, e_items)
        if len(ex_rows):
            scores = tf.tensor_scatter_nd_update(
                scores, np.stack([ex_rows, ex_cols], 1), tf.fill([len(ex_rows)], -np.inf))
        top_k = tf.math.top_k(scores, k=max_k)
        top = top_k.indices.numpy()
        # When K exceeds a user's candidates, top_k fills the tail with excluded (-inf) items;
        # they are not recommendations and never count as hits.
        recommended = np.isfinite(top_k.values.numpy())
        relevant = np.zeros((len(users), num_items), bool)
        relevant[_rows_cols(users, h_ptr, h_items)] = True
        for g, members in groups.items():
            rel = relevant & members
            n_rel = rel.sum(axis=1)
            has = n_rel > 0
            if not has.any():
                continue
            hits = (np.take_along_axis(rel, top, axis=1) & recommended)[has]
            n_rel = n_rel[has]
            counts[g] += int(has.sum())
            for k in ks:
                kk = min(k, max_k)
                sums[g][f"recall@{k}"] += float((hits[:, :kk].sum(1) / n_rel).sum())
                dcg = (hits[:, :kk] * discounts[:kk]).sum(1)
                ideal = np.cumsum(discounts[:kk])[np.minimum(n_rel, kk) - 1]
                sums[g][f"ndcg@{k}"] += float((dcg / ideal).sum())
    return {g: {**{name: (v / counts[g] if counts[g] else float("nan")) for name, v in sums[g].items()},
                "users": counts[g]} for g in groups}


def _rows_cols(users: np.ndarray, indptr: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batch-local row numbers and item columns of each user's entries in a CSR structure."""
    starts, ends = indptr[users], indptr[users + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(len(users)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, items[np.repeat(starts, lengths) + offsets]
