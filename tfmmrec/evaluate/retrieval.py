"""Full-catalog retrieval metrics with seen items excluded: Recall, NDCG, HitRate, MRR, MAP, coverage.

Protocol (the same everywhere in tfmmrec, so numbers are comparable across runs):

- users: those with at least one held-out (test or valid) interaction with an item of the group;
- candidates: every item of the catalog, minus the user's ``exclude`` items (training items,
  and for test also validation items): recommending what the user already has is no success;
- relevant: the user's distinct held-out items in the group (a repeated pair counts once);
- Recall@K = hits in the top K / number of relevant items;
- NDCG@K with binary relevance, ideal DCG over min(K, number of relevant items);
- HitRate@K = 1 if any relevant item is in the top K;
- MRR@K = 1 / rank of the first relevant item in the top K (0 if none);
- MAP@K = sum over hit positions k <= K of precision@k, divided by min(K, number of relevant items);
- all averaged over users. Groups: ``all``, and ``warm``/``cold`` = held-out items with / without
  training interactions; all groups rank against the same full catalog;
- Coverage@K (catalog coverage) = share of the group's items that appear in the top K of at least
  one evaluated user (users of ``all``); for ``all`` that is the usual catalog coverage, for
  ``cold`` it says how much of the cold catalog is ever recommended.

Ties: ``tf.math.top_k`` puts the lower item index first among equal scores, so the ranking and
every metric are deterministic. When K exceeds a user's number of candidates, the excluded items
that fill the tail are no recommendations: they never count as hits nor towards coverage.

For numbers comparable with the TFRS tutorials (no exclusion, per interaction) see
``tfmmrec.evaluate.topk.factorized_top_k_accuracy``.

Scoring is a batched matrix product and ``tf.math.top_k``; hits are found by searching the top-K
indices among the batch's held-out pairs (sorted keys): no Python loop over users, and no dense
users x items relevance matrix.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfmmrec.data.per_user import rows_per_user

DEFAULT_KS = (10, 20, 50)
METRICS = ("recall", "ndcg", "hitrate", "mrr", "map")


@tf.function(reduce_retracing=True)
def _top_k(queries: tf.Tensor, items: tf.Tensor, ex_index: tf.Tensor, k: int) -> tuple[tf.Tensor, tf.Tensor]:
    scores = tf.matmul(queries, items, transpose_b=True)
    scores = tf.tensor_scatter_nd_update(scores, ex_index, tf.fill(tf.shape(ex_index)[:1], -np.inf))
    top = tf.math.top_k(scores, k=k)
    return top.values, top.indices


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
      batch_size: users scored at once (default: about 20M scores per batch).
    Returns:
      ``{group: {"recall@K", "ndcg@K", "hitrate@K", "mrr@K", "map@K", "coverage@K": float,
      "users": n}}``; a group without users has NaN metrics (coverage is still defined).
    """
    num_users, num_items = len(user_embeddings), len(item_embeddings)
    groups = {"all": np.ones(num_items, bool), **{g: np.asarray(m, bool) for g, m in (item_groups or {}).items()}}
    max_k = min(max(ks), num_items)
    h_ptr, h_items = rows_per_user(*heldout, num_users, unique=True)
    e_ptr, e_items = rows_per_user(*exclude, num_users)
    eval_users = np.flatnonzero(np.diff(h_ptr) > 0)
    batch_size = batch_size or max(1, min(1024, 20_000_000 // max(num_items, 1)))
    sums = {g: {f"{m}@{k}": 0.0 for k in ks for m in METRICS} for g in groups}
    counts = {g: 0 for g in groups}
    covered = {k: np.zeros(num_items, bool) for k in ks}
    discounts = 1.0 / np.log2(np.arange(2, max_k + 2))
    positions = np.arange(1, max_k + 1)
    items_t = tf.constant(item_embeddings, tf.float32)
    for start in range(0, len(eval_users), batch_size):
        users = eval_users[start:start + batch_size]
        ex_rows, ex_cols = _rows_cols(users, e_ptr, e_items)
        values, top = _top_k(tf.constant(user_embeddings[users], tf.float32), items_t,
                             tf.constant(np.stack([ex_rows, ex_cols], 1).reshape(-1, 2), tf.int64), max_k)
        top = top.numpy().astype(np.int64)
        recommended = np.isfinite(values.numpy())
        for k in ks:
            kk = min(k, max_k)
            covered[k][top[:, :kk][recommended[:, :kk]]] = True
        h_rows, h_cols = _rows_cols(users, h_ptr, h_items)
        held_keys = h_rows * num_items + h_cols  # sorted: rows ascending, items ascending within a row
        top_keys = np.arange(len(users))[:, None] * num_items + top
        found = np.searchsorted(held_keys, top_keys).clip(max=len(held_keys) - 1)
        is_held = (held_keys[found] == top_keys) & recommended
        for g, members in groups.items():
            n_rel = np.bincount(h_rows, weights=members[h_cols], minlength=len(users))
            has = n_rel > 0
            if not has.any():
                continue
            hits = (is_held & members[top])[has]
            n_rel = n_rel[has]
            counts[g] += int(has.sum())
            precision = np.cumsum(hits, axis=1) / positions
            for k in ks:
                kk = min(k, max_k)
                h = hits[:, :kk]
                n_hits = h.sum(1)
                ideal_n = np.minimum(n_rel, kk).astype(np.int64)
                s = sums[g]
                s[f"recall@{k}"] += float((n_hits / n_rel).sum())
                s[f"ndcg@{k}"] += float(((h * discounts[:kk]).sum(1) / np.cumsum(discounts[:kk])[ideal_n - 1]).sum())
                s[f"hitrate@{k}"] += float((n_hits > 0).sum())
                s[f"mrr@{k}"] += float(np.where(n_hits > 0, 1.0 / (h.argmax(1) + 1), 0.0).sum())
                s[f"map@{k}"] += float(((precision[:, :kk] * h).sum(1) / ideal_n).sum())
    out = {}
    for g, members in groups.items():
        metrics = {name: (v / counts[g] if counts[g] else float("nan")) for name, v in sums[g].items()}
        for k in ks:
            metrics[f"coverage@{k}"] = float((covered[k] & members).sum() / members.sum()) if members.any() \
                else float("nan")
        out[g] = {**metrics, "users": counts[g]}
    return out


def _rows_cols(users: np.ndarray, indptr: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batch-local row numbers and item columns of each user's entries in a CSR structure."""
    starts, ends = indptr[users], indptr[users + 1]
    lengths = ends - starts
    rows = np.repeat(np.arange(len(users)), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, items[np.repeat(starts, lengths) + offsets]
