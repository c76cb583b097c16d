"""The tf.data pipelines that feed ``fit``: shuffled positive pairs for retrieval, pairs with
sampled negatives for ranking, every batch of integer indices (``tfmmrec.data.interactions``).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfmmrec.data.interactions import EncodedInteractions


def retrieval_dataset(data: EncodedInteractions, batch_size: int, seed: int,
                      history: np.ndarray | None = None, with_target: bool = False,
                      repeat: bool = False, start_step: int = 0) -> tf.data.Dataset:
    """Shuffled batches of ``{"user", "item", "item_prob"}`` positive pairs, reshuffled every epoch,
    plus each pair's ``history`` (``[batch, L]``, see :func:`user_histories`) when given, and its
    rating or label as ``target`` when ``with_target`` and the log has one (the multitask ranking head).

    Shuffling works on whole batches: one random permutation per epoch, then each batch is one
    gather from in-memory columns. An element-wise ``shuffle().batch()`` pipeline costs tens of
    microseconds per example, as much as the training step itself at batch 1024 on 2 cores.
    ``repeat``: one endless stream of epochs, see :func:`batched_permutations` (and ``start_step``).
    """
    columns = {"user": data.train.user, "item": data.train.item, "item_prob": data.item_prob[data.train.item]}
    if history is not None:
        columns["history"] = history
    if with_target and data.train.target is not None:
        columns["target"] = data.train.target
    if data.train.weight is not None:  # the retrieval task's sample_weight
        columns["weight"] = data.train.weight
    return batched_permutations(columns, batch_size, seed, repeat=repeat, start_step=start_step)


def batches_per_epoch(num_rows: int, batch_size: int) -> int:
    """Steps of one epoch of :func:`batched_permutations` (the last batch may be partial)."""
    return -(-num_rows // batch_size)


def batched_permutations(columns: dict[str, np.ndarray], batch_size: int, seed: int,
                         repeat: bool = False, start_step: int = 0) -> tf.data.Dataset:
    """Batches of rows of ``columns`` in a fresh random order every epoch (the last one partial).

    ``repeat=False``: one epoch per iteration (each new iterator draws a new order). ``repeat=True``:
    one endless iterator, epoch after epoch, each a fresh permutation (every row exactly once per
    :func:`batches_per_epoch` batches); give ``fit`` that ``steps_per_epoch``. Keras then keeps one
    iterator for the whole ``fit``. With a finite dataset Keras makes a new iterator every epoch
    and drops the old one, and destroying a tf.data iterator blocks the training loop until its
    background threads stop: measured 0.6-2.3 s at one epoch boundary out of two or three on the
    shared 2-core machine (benchmarks/README.md), against ~10 ms per training step.

    ``start_step`` (with ``repeat``): the stream begins at that global step (batch
    ``start_step % steps`` of epoch ``start_step // steps``), exactly the batches an uninterrupted
    stream yields from there: a run resumed from a backup (``tfmmrec.train.resume``) continues
    with the batch it would have seen, not with the first epoch's order again.
    """
    n = len(next(iter(columns.values())))
    table = {k: tf.constant(v) for k, v in columns.items()}
    starts = tf.range(0, n, batch_size, dtype=tf.int64)

    def epoch(order: tf.Tensor, first_batch: tf.Tensor | int = 0) -> tf.data.Dataset:
        # Skip before the gather: skipped batches cost nothing.
        return tf.data.Dataset.from_tensor_slices(starts).skip(first_batch).map(
            lambda s: {k: tf.gather(v, order[s:s + batch_size]) for k, v in table.items()})

    # One random draw per epoch (re-drawn on every iteration, reproducible from ``seed``) seeds a
    # stateless permutation: a stateful shuffle op would repeat the same order every epoch.
    # ``repeat``: the endless random stream gives every epoch its own seed, the same sequence on
    # every run with the same ``seed``.
    permutation = lambda s: tf.argsort(  # noqa: E731
        tf.random.stateless_uniform([n], seed=tf.stack([s, tf.constant(seed, tf.int64)])))
    if repeat:
        first_epoch, first_batch = divmod(int(start_step), batches_per_epoch(n, batch_size))
        orders = tf.data.Dataset.random(seed=seed).skip(first_epoch).map(permutation).enumerate()
        return orders.flat_map(
            lambda i, order: epoch(order, tf.where(i == 0, tf.constant(first_batch, tf.int64), 0))).prefetch(2)
    if start_step:
        raise ValueError("batched_permutations: start_step needs repeat=True (one endless stream)")
    orders = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1).map(permutation)
    # The epoch's batch count is fixed; telling tf.data lets Keras know the steps per epoch.
    return orders.flat_map(epoch).apply(
        tf.data.experimental.assert_cardinality(batches_per_epoch(n, batch_size))).prefetch(2)


def ranking_dataset(data: EncodedInteractions, batch_size: int, negatives: int, seed: int,
                    explicit: bool, repeat: bool = False, start_step: int = 0) -> tf.data.Dataset:
    """Ratings as they are (``explicit``), or positives plus ``negatives`` uniformly sampled
    training items per positive, drawn afresh every epoch, labelled 1 and 0. With interaction
    weights, each element is ``(features, label, sample_weight)``; a positive's negatives carry
    its weight (they were drawn for it).

    ``repeat``/``start_step`` as in :func:`batched_permutations`; steps per epoch:
    :func:`ranking_steps_per_epoch`. The negatives of global step ``t`` are a function of
    ``(seed, t)`` alone (stateless draws keyed by a per-step random stream), so a resumed run
    samples the same negatives as an uninterrupted one.
    """
    train = data.train
    weighted = train.weight is not None
    if explicit:
        columns = {"user": train.user, "item": train.item, "target": train.target}
        if weighted:
            columns["weight"] = train.weight
        ds = batched_permutations(columns, batch_size, seed, repeat=repeat, start_step=start_step)
        if weighted:
            return ds.map(lambda b: ({"user": b["user"], "item": b["item"]}, b["target"], b["weight"]))
        return ds.map(lambda b: ({"user": b["user"], "item": b["item"]}, b["target"]))
    # Negatives come from items with training interactions only: sampling held-out (cold) items
    # as negatives would teach the model that exactly those items are bad.
    train_items = tf.constant(np.unique(train.item))
    group = negatives + 1

    def with_negatives(batch: dict[str, tf.Tensor], key: tf.Tensor) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        # Vectorised over a batch of positives: one op per batch, not per example.
        user, item = batch["user"], batch["item"]
        step_seed = tf.stack([key, tf.constant(seed, tf.int64)])
        picks = tf.random.stateless_uniform([tf.shape(user)[0], negatives], step_seed, 0, tf.shape(train_items)[0],
                                            dtype=tf.int32)
        items = tf.concat([item[:, None], tf.gather(train_items, picks)], axis=1)
        labels = tf.tile(tf.concat([[1.0], tf.zeros([negatives])], 0)[None], [tf.shape(user)[0], 1])
        return {"user": tf.repeat(user, group), "item": tf.reshape(items, [-1])}, tf.reshape(labels, [-1])

    columns = {"user": train.user, "item": train.item}
    if weighted:
        columns["weight"] = train.weight
    positives = batched_permutations(columns, ranking_positives_per_batch(batch_size, negatives), seed,
                                     repeat=repeat, start_step=start_step)
    # One random key per step; endless runs: the same key sequence on every run, from ``start_step``.
    keys = (tf.data.Dataset.random(seed=seed + 1).skip(start_step) if repeat
            else tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True))
    pairs = tf.data.Dataset.zip((positives, keys))
    if weighted:
        return pairs.map(lambda b, key: (*with_negatives(b, key), tf.repeat(b["weight"], group))).prefetch(2)
    return pairs.map(with_negatives).prefetch(2)


def ranking_positives_per_batch(batch_size: int, negatives: int) -> int:
    """Positives per :func:`ranking_dataset` batch (each comes with ``negatives`` sampled items)."""
    return max(1, batch_size // (negatives + 1))


def ranking_steps_per_epoch(data: EncodedInteractions, batch_size: int, negatives: int, explicit: bool) -> int:
    """Steps of one epoch of :func:`ranking_dataset`."""
    return batches_per_epoch(len(data.train), batch_size if explicit else ranking_positives_per_batch(
        batch_size, negatives))


