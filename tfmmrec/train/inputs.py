"""Map raw ids to model indices once, and build the tf.data pipelines that feed ``fit``.

Ids are looked up here, in numpy, one time; the training steps see only integer tensors
(string lookups on every step are a large share of a naive pipeline's time).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf


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


def ranking_eval_set(data: EncodedInteractions, split: str, negatives: int, seed: int,
                     explicit: bool) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Held-out pairs to score, and whether each pair's item is warm (has training interactions).

    Explicit feedback: the split's interactions with their ratings. Implicit: the split's
    positives plus ``negatives`` sampled items per positive that the user never interacted with,
    drawn from the positive's own group (warm or cold). Drawing them from the whole catalog would
    mostly measure that cold items lack the popularity bias warm items learned, not whether the
    model ranks a user's items above others.
    """
    part = getattr(data, split)
    warm_items = np.unique(data.train.item)
    if explicit:
        return {"user": part.user, "item": part.item}, part.target, np.isin(part.item, warm_items)
    rng = np.random.default_rng(seed)
    cold_items = np.setdiff1d(np.arange(1, data.num_items + 1), warm_items)
    pair_key = lambda u, i: u.astype(np.int64) * (data.num_items + 1) + i  # noqa: E731
    seen = np.unique(np.concatenate([pair_key(s.user, s.item) for s in (data.train, data.valid, data.test)]))
    pos_warm = np.isin(part.item, warm_items)
    cand_u = np.repeat(part.user, negatives)
    cand_warm = np.repeat(pos_warm, negatives)
    cand_i = np.where(cand_warm, rng.choice(warm_items, len(cand_u)),
                      rng.choice(cold_items, len(cand_u)) if len(cold_items) else 0).astype(np.int32)
    keep = ~np.isin(pair_key(cand_u, cand_i), seen, assume_unique=False) & (cand_i > 0)
    inputs = {"user": np.concatenate([part.user, cand_u[keep]]), "item": np.concatenate([part.item, cand_i[keep]])}
    labels = np.concatenate([np.ones(len(part), np.float32), np.zeros(int(keep.sum()), np.float32)])
    return inputs, labels, np.concatenate([pos_warm, cand_warm[keep]])
