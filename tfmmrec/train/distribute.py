"""Which ``tf.distribute`` strategy a run trains under, and how its input is split.

``distribute`` in the run config:

- ``auto``: ``MirroredStrategy`` over all visible GPUs when there are two or more, else the
  default (one device) strategy;
- ``one_device``: the default strategy, whatever is visible;
- ``mirrored``: ``MirroredStrategy`` over all visible GPUs (or CPU when there are none, or
  over logical CPU devices, as the tests do);
- ``multi_worker``: ``MultiWorkerMirroredStrategy``; every worker runs the same command with
  its own ``TF_CONFIG`` (cluster + task), see the README.

Batch size and learning rate: ``batch_size`` is the *global* batch. Each of R replicas gets
``batch_size / R`` examples, and the retrieval task gathers the candidates of all replicas
(``tfmmrec.models.distributed``), so a step sees the same N - 1 in-batch negatives and computes
the same summed loss and gradient as one device on that batch: keep the learning rate when you
add replicas at a fixed global batch. To use the extra devices for throughput, raise
``batch_size`` with the replicas (``R x`` the one-device batch); the summed loss then grows
with the batch, and Adam (the default optimizer) is invariant to that gradient scale, so start
from the same learning rate and tune it (larger batches usually tolerate ~sqrt(R) x).

Why no ``parameter_server``: it exists for embedding tables too large for one device's memory.
tfmmrec's tables are per-user and per-item rows of 64 floats (a million items is 256 MB), well
within one host, while ParameterServerStrategy needs a separate coordinator/PS/worker cluster, a
``ClusterCoordinator`` input function instead of a plain dataset, and gives up batch-level
``BackupAndRestore`` (tf_keras skips it under PSS). Mirrored strategies keep one code path.
"""
from __future__ import annotations

import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def resolve_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The strategy named by the config's ``distribute`` value (see the module docstring)."""
    if name not in STRATEGIES:
        raise ValueError(f"distribute: {name!r} is not one of {', '.join(STRATEGIES)}")
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "auto" and len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def shard_by_data(ds: tf.data.Dataset) -> tf.data.Dataset:
    """Auto-shard by elements, not files: the pipelines are built from in-memory arrays, which
    have no files to shard (a multi-worker run would otherwise try FILE sharding and warn or fail).
    Every worker builds the same shuffled stream from the same seed and keeps its share of the
    global batches, so the workers together see each example once per epoch."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def num_replicas(strategy: tf.distribute.Strategy | None = None) -> int:
    return (strategy or tf.distribute.get_strategy()).num_replicas_in_sync
