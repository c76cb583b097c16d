"""Validation and test splits as ``tf.data`` datasets for Keras ``evaluate`` and ``fit(validation_data=...)``.

Retrieval: one row per user with held-out items of the split, carrying what the full-catalog
protocol needs (``tfmmrec.evaluate.protocol``): the user's distinct held-out item rows, whether
each is warm (has training interactions), and the item rows to exclude from the ranking (training
items; for ``test`` also validation items). Rows are ``-1``-padded per batch, not to the longest
user of the whole split, so one heavy user does not inflate every batch.

Ranking: the pairs and targets of ``tfmmrec.evaluate.protocol.ranking_eval_set`` as batches.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.data.per_user import rows_per_user
from tfmmrec.evaluate.protocol import ranking_eval_set, retrieval_eval_protocol


def retrieval_eval_dataset(data: EncodedInteractions, split: str = "valid", *, batch_size: int = 256
                           ) -> tf.data.Dataset:
    """Batches of ``{"user", "relevant", "relevant_warm", "exclude"}`` for a retrieval model's
    ``evaluate`` (see ``tfmmrec.models.catalog_eval``); one row per user with held-out items.

    Args:
      split: ``"valid"`` (training items excluded) or ``"test"`` (training and validation items excluded).
      batch_size: users per batch; each batch scores ``batch_size x catalog`` items at once.
    """
    (h_users, h_items), (e_users, e_items), warm = retrieval_eval_protocol(data, split)
    h_ptr, h_rows = rows_per_user(h_users, h_items, data.num_users + 1, unique=True)
    e_ptr, e_rows = rows_per_user(e_users, e_items, data.num_users + 1)
    users = np.flatnonzero(np.diff(h_ptr) > 0).astype(np.int32)
    # Users are ascending and h_rows is sorted by user, so the held-out rows of ``users`` are contiguous.
    relevant = tf.RaggedTensor.from_row_lengths(h_rows, np.diff(h_ptr)[users])
    lengths = e_ptr[users + 1] - e_ptr[users]
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    exclude = tf.RaggedTensor.from_row_lengths(e_rows[np.repeat(e_ptr[users], lengths) + offsets], lengths)
    rows = {"user": tf.constant(users), "relevant": relevant, "relevant_warm": tf.ragged.map_flat_values(
        lambda r: tf.gather(tf.constant(warm), r), relevant), "exclude": exclude}

    def pad(batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"user": batch["user"], "relevant": batch["relevant"].to_tensor(-1),
                "relevant_warm": batch["relevant_warm"].to_tensor(False), "exclude": batch["exclude"].to_tensor(-1)}

    return tf.data.Dataset.from_tensor_slices(rows).batch(batch_size).map(pad).prefetch(2)


def ranking_eval_dataset(data: EncodedInteractions, split: str, *, negatives: int, seed: int, explicit: bool,
                         batch_size: int = 8192) -> tf.data.Dataset:
    """``({"user", "item"}, target)`` batches of :func:`ranking_eval_set`: a ranking model's
    ``evaluate`` / ``validation_data``, its compiled metrics (``rmse`` or ``auc``) then score them."""
    inputs, targets, _ = ranking_eval_set(data, split, negatives, seed, explicit)
    return tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(batch_size)
