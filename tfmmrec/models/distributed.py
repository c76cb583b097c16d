"""In-batch negatives across replicas: a global batch of N gives every query N - 1 negatives.

Under ``MirroredStrategy`` / ``MultiWorkerMirroredStrategy`` each replica sees only its slice
of the global batch, so ``tfrs.tasks.Retrieval`` would score each query against the
N / replicas candidates of its own slice: fewer negatives than on one device, and a loss that
changes with the number of replicas. Gathering the candidates of all replicas (with their
sampling probabilities for the logQ correction and their ids for accidental-hit removal)
restores the one-device loss exactly.

Gradients: ``ReplicaContext.all_gather`` is differentiable; its gradient all-reduces (sums)
the upstream gradients of every replica and hands each replica the rows it contributed. So
each candidate embedding receives the gradient of the *global* loss, and the optimizer's
cross-replica SUM of variable gradients equals the one-device gradient of the summed loss
(``tfrs.tasks.Retrieval`` sums over queries by default). ``tests/train/test_distribute.py``
checks loss and gradients against one device numerically.
"""
from __future__ import annotations

import tensorflow as tf


def gather_candidates_across_replicas(
        candidates: tf.Tensor, *extras: tf.Tensor | None) -> tuple[tf.Tensor | None, ...]:
    """All-gather ``candidates`` (and per-candidate ``extras``) from every replica, in replica context.

    The gathered rows are rotated so that this replica's own rows come first: query i's
    positive stays at column i, which is what ``tfrs.tasks.Retrieval`` assumes (its labels are
    ``eye(num_queries, num_candidates)``); the other replicas' rows become extra negatives.
    Outside a multi-replica step (one device, or cross-replica context) everything is returned
    unchanged, so calling this costs nothing on one device. Replicas may hold batches of
    different sizes (the last, partial batch).

    Args:
      candidates: ``[local_batch, dim]`` candidate embeddings of this replica.
      *extras: per-row tensors ``[local_batch, ...]`` to gather alongside (``None`` passes through).
    Returns:
      ``(candidates, *extras)``, each ``[global_batch, ...]``.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return (candidates, *extras)
    sizes = ctx.all_gather(tf.shape(candidates)[:1], axis=0)
    offset = tf.reduce_sum(sizes[:ctx.replica_id_in_sync_group])

    def gather(value: tf.Tensor) -> tf.Tensor:
        return tf.roll(ctx.all_gather(value, axis=0), shift=-offset, axis=0)

    # Ids and probabilities carry no gradient; keeping them out of the embeddings' all_gather
    # keeps its custom gradient to float tensors only.
    return (gather(candidates), *(None if e is None else gather(tf.stop_gradient(e)) for e in extras))
