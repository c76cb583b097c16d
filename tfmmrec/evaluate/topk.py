"""The TFRS ``FactorizedTopK`` protocol: per-interaction top-K categorical accuracy.

What ``tfrs.metrics.FactorizedTopK`` (score-based, exact index) computes, and the TFRS tutorials
report as ``factorized_top_k/top_K_categorical_accuracy``:

- one example per held-out interaction (a repeated pair counts each time), averaged over
  interactions, not users: heavy users weigh more;
- candidates: the whole catalog, with **no exclusion**: the user's training items compete with the
  held-out one (and a training item ranked first pushes it down);
- hit@K when fewer than K candidates score *strictly* higher than the held-out item
  (``tf.math.in_top_k``): ties go in the held-out item's favour.

``evaluate_retrieval`` (tfmmrec's main protocol) instead ranks per user, excludes what the user
already has, and breaks ties by item index. On the same model this protocol gives different,
usually lower, numbers for the same K when users have many training items. Use it only to compare
with TFRS tutorials.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

TFRS_KS = (1, 5, 10, 50, 100)


@tf.function(reduce_retracing=True)
def _strictly_higher(queries: tf.Tensor, items: tf.Tensor, positives: tf.Tensor) -> tf.Tensor:
    scores = tf.matmul(queries, items, transpose_b=True)
    own = tf.gather(scores, positives, axis=1, batch_dims=1)
    return tf.reduce_sum(tf.cast(scores > own[:, None], tf.int64), axis=1)


def factorized_top_k_accuracy(user_embeddings: np.ndarray, item_embeddings: np.ndarray,
                              heldout: tuple[np.ndarray, np.ndarray], *, ks: tuple[int, ...] = TFRS_KS,
                              item_groups: dict[str, np.ndarray] | None = None,
                              batch_size: int | None = None) -> dict[str, dict[str, float]]:
    """Top-K categorical accuracy of each held-out interaction over all items (TFRS protocol).

    Args:
      user_embeddings: ``[num_users, d]``; item_embeddings: ``[num_items, d]``.
      heldout: ``(user_rows, item_rows)``, one example per pair.
      item_groups: name -> boolean ``[num_items]``, grouped by the held-out item; ``all`` added.
    Returns:
      ``{group: {"top_K_categorical_accuracy": float, ..., "interactions": n}}``.
    """
    users, items = np.asarray(heldout[0], np.int64), np.asarray(heldout[1], np.int64)
    num_items = len(item_embeddings)
    batch_size = batch_size or max(1, min(4096, 20_000_000 // max(num_items, 1)))
    items_t = tf.constant(item_embeddings, tf.float32)
    higher = np.concatenate([np.zeros(0, np.int64)] + [
        _strictly_higher(tf.constant(user_embeddings[users[s:s + batch_size]], tf.float32), items_t,
                         tf.constant(items[s:s + batch_size])).numpy()
        for s in range(0, len(users), batch_size)])
    groups = {"all": np.ones(num_items, bool), **{g: np.asarray(m, bool) for g, m in (item_groups or {}).items()}}
    out = {}
    for g, members in groups.items():
        sel = members[items]
        out[g] = {**{f"top_{k}_categorical_accuracy": float((higher[sel] < k).mean()) if sel.any() else float("nan")
                     for k in ks}, "interactions": int(sel.sum())}
    return out
