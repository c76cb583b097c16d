"""Full-catalog retrieval metrics as Keras metrics: ``model.evaluate`` and ``fit(validation_data=...)``.

The protocol is the one of ``tfmmrec.evaluate.retrieval`` (every catalog item a candidate, the
user's ``exclude`` items removed, binary relevance of the user's distinct held-out items, averages
over users with at least one relevant item of the group), computed in TensorFlow on one batch of
users at a time so that it can run inside Keras's ``test_step``:

- :func:`catalog_metric_values` scores a batch of queries against all candidates and returns each
  user's Recall/NDCG/HitRate/MRR/MAP@K per item group, with a per-user weight (1 if the user has a
  relevant item of the group), i.e. what a Keras ``Mean`` metric averages;
- :class:`CatalogEvaluation` is the mixin that gives a two-tower model the Keras side: its
  ``evaluate`` embeds the catalog once per call (batched, into a non-trainable variable that is
  not part of the model's weights), and its ``test_step`` scores the batch's users against it.

Batches come from ``tfmmrec.train.eval_inputs.retrieval_eval_dataset``: per user its index,
its relevant item rows and its excluded item rows (``-1``-padded), and which relevant items are
warm. Training steps never compute these metrics: scoring the whole catalog costs more than a step.

The metrics are named as Keras names them in logs: ``recall_at_20``, ``ndcg_at_20``, ... for all
held-out items and ``recall_at_20_warm`` / ``recall_at_20_cold`` for items with / without
training interactions; during ``fit`` they appear as ``val_recall_at_20`` and so on.
``users`` (``users_warm``, ``users_cold``) counts the users a group's metrics average over: a
group without users reports 0 (Keras's ``Mean`` of nothing), where ``evaluate_retrieval`` says NaN.
Coverage@K (a catalog-wide union, not a mean over users) stays in ``evaluate_retrieval``.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

CATALOG_METRICS = ("recall", "ndcg", "hitrate", "mrr", "map")
DEFAULT_CATALOG_KS = (10, 20, 50)
GROUPS = ("", "_warm", "_cold")  # suffix of the metric name: all, warm, cold held-out items


def metric_name(metric: str, k: int, group: str = "") -> str:
    """Keras's name of a catalog metric: ``("recall", 20, "_cold")`` -> ``recall_at_20_cold``."""
    return f"{metric}_at_{k}{group}"


def _padded_indices(padded: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Rows and values of the non-negative entries of a ``-1``-padded ``[batch, n]`` tensor."""
    where = tf.where(padded >= 0)
    return where[:, 0], tf.gather_nd(padded, where)


def catalog_metric_values(queries: tf.Tensor, candidates: tf.Tensor, relevant: tf.Tensor, exclude: tf.Tensor,
                          relevant_warm: tf.Tensor | None = None, ks: tuple[int, ...] = DEFAULT_CATALOG_KS
                          ) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
    """Per-user catalog metrics of one batch, for Keras ``Mean`` metrics.

    Args:
      queries: ``[b, d]`` query embeddings.
      candidates: ``[n, d]`` embeddings of all catalog items (row r = item row r).
      relevant: ``[b, R]`` int, each user's distinct held-out item rows, ``-1`` = padding.
      exclude: ``[b, E]`` int, item rows not to recommend (training, and for test validation items).
      relevant_warm: ``[b, R]`` bool, whether each relevant item had training interactions; with it
        the ``_warm`` and ``_cold`` groups are scored too.
    Returns:
      ``{metric_name: (values [b], weights [b])}``: the user's value and 1 where the user has a
      relevant item of the group (0 otherwise, the value is then 0); and ``users``,
      ``users_warm``, ``users_cold``: 1 per user of the group (summed, not averaged).
    """
    num_items = tf.shape(candidates)[0]
    batch = tf.shape(queries)[0]
    max_k = tf.minimum(max(ks), num_items)
    scores = tf.matmul(queries, candidates, transpose_b=True)
    ex_rows, ex_cols = _padded_indices(tf.cast(exclude, tf.int64))
    scores = tf.tensor_scatter_nd_update(scores, tf.stack([ex_rows, ex_cols], 1),
                                         tf.fill(tf.shape(ex_rows), tf.constant(-float("inf"), scores.dtype)))
    top = tf.math.top_k(scores, k=max_k)
    recommended = tf.math.is_finite(top.values)  # excluded items filling the tail are no recommendations
    rel_rows, rel_cols = _padded_indices(tf.cast(relevant, tf.int64))
    # [relevant entries, K]: where each relevant item sits in its user's top K (at most once).
    match = tf.logical_and(tf.equal(tf.gather(tf.cast(top.indices, tf.int64), rel_rows), rel_cols[:, None]),
                           tf.gather(recommended, rel_rows))
    groups = {"": tf.ones_like(rel_rows, tf.bool)}
    if relevant_warm is not None:
        warm = tf.gather_nd(tf.cast(relevant_warm, tf.bool), tf.where(tf.cast(relevant, tf.int64) >= 0))
        groups.update({"_warm": warm, "_cold": tf.logical_not(warm)})
    positions = tf.range(1, max_k + 1, dtype=tf.float32)
    discounts = 1.0 / (tf.math.log(positions + 1.0) / tf.math.log(2.0))
    ideal_cumulative = tf.cumsum(discounts)
    out: dict[str, tuple[tf.Tensor, tf.Tensor]] = {}
    for group, members in groups.items():
        member = tf.cast(members, tf.float32)
        n_rel = tf.math.unsorted_segment_sum(member, rel_rows, batch)
        hits = tf.math.unsorted_segment_sum(tf.cast(match, tf.float32) * member[:, None], rel_rows, batch)
        weight = tf.cast(n_rel > 0, tf.float32)
        precision = tf.cumsum(hits, axis=1) / positions
        for k in ks:
            kk = tf.minimum(k, max_k)
            h = hits[:, :kk]
            n_hits = tf.reduce_sum(h, 1)
            ideal_n = tf.cast(tf.minimum(n_rel, tf.cast(kk, tf.float32)), tf.int32)
            ideal = tf.gather(ideal_cumulative, tf.maximum(ideal_n - 1, 0))
            first = tf.cast(tf.argmax(h, axis=1), tf.float32) + 1.0
            values = {
                "recall": tf.math.divide_no_nan(n_hits, n_rel),
                "ndcg": tf.math.divide_no_nan(tf.reduce_sum(h * discounts[:kk], 1), ideal * weight),
                "hitrate": tf.cast(n_hits > 0, tf.float32),
                "mrr": tf.where(n_hits > 0, 1.0 / first, 0.0),
                "map": tf.math.divide_no_nan(tf.reduce_sum(precision[:, :kk] * h, 1), tf.cast(ideal_n, tf.float32)),
            }
            for metric in CATALOG_METRICS:
                out[metric_name(metric, k, group)] = (values[metric] * weight, weight)
        out[f"users{group}"] = (weight, tf.ones_like(weight))
    return out


class _CatalogState:
    """Evaluation-only state kept off the model's tracked weights (a plain object: Keras tracks
    neither it nor what it holds), so checkpoints, ``get_weights`` and exports are unchanged."""

    def __init__(self) -> None:
        self.candidates: tf.Variable | None = None
        self.metrics: dict[str, keras.metrics.Mean] = {}


class CatalogEvaluation:
    """Mixin for a Keras two-tower model with ``query_tower`` and ``item_tower`` (item indices
    ``1..n`` = catalog rows ``0..n-1``): full-catalog metrics through ``evaluate`` and ``fit``.

    ``catalog_ks`` (default 10, 20, 50) sets the K of the metrics; set it before evaluating.
    A dataset without a ``relevant`` key (training-style pairs) is evaluated the usual way (loss).

    Example::

        valid = retrieval_eval_dataset(data, "valid")
        model.fit(train, epochs=50, validation_data=valid, callbacks=[keras.callbacks.EarlyStopping(
            monitor="val_recall_at_20", mode="max", patience=3, restore_best_weights=True)])
        model.evaluate(retrieval_eval_dataset(data, "test"), return_dict=True)["recall_at_20"]
    """

    catalog_ks: tuple[int, ...] = DEFAULT_CATALOG_KS
    catalog_batch_size: int = 4096  # items embedded at once when the catalog is embedded

    @property
    def _catalog(self) -> _CatalogState:
        state = self.__dict__.get("_catalog_state_")
        if state is None:
            state = _CatalogState()
            object.__setattr__(self, "_catalog_state_", state)  # bypass Keras's attribute tracking
        return state

    def embed_catalog(self) -> tf.Tensor:
        """Embeddings of every catalog item (rows ``0..n-1``), computed in batches, stored for the
        test steps; returns them."""
        num_items = int(self.item_tower.table.num_rows) - 1  # type: ignore[attr-defined]
        parts = [self.item_tower(tf.range(start + 1, min(start + self.catalog_batch_size, num_items) + 1),  # type: ignore[attr-defined]
                                 training=False)
                 for start in range(0, num_items, self.catalog_batch_size)]
        embeddings = tf.concat(parts, 0)
        state = self._catalog
        if state.candidates is None or state.candidates.shape != embeddings.shape:
            with tf.init_scope():
                state.candidates = tf.Variable(embeddings, trainable=False, name="catalog_candidates")
            self.test_function = None  # a new variable: the compiled test step must capture it
        else:
            state.candidates.assign(embeddings)
        return embeddings

    def _catalog_metrics(self) -> dict[str, keras.metrics.Mean]:
        state = self._catalog
        names = [metric_name(m, k, g) for g in GROUPS for k in self.catalog_ks for m in CATALOG_METRICS]
        if list(state.metrics) != names + [f"users{g}" for g in GROUPS]:
            with self.distribute_strategy.scope():  # type: ignore[attr-defined]
                state.metrics = {name: keras.metrics.Mean(name=name) for name in names}
                state.metrics.update({f"users{g}": keras.metrics.Sum(name=f"users{g}") for g in GROUPS})
            self.test_function = None
        return state.metrics

    def evaluate(self, x: Any = None, *args: Any, **kwargs: Any) -> Any:
        if _is_catalog_dataset(x):
            self.embed_catalog()
            for metric in self._catalog_metrics().values():
                metric.reset_state()
        return super().evaluate(x, *args, **kwargs)  # type: ignore[misc]

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        if not (isinstance(data, dict) and "relevant" in data):
            return super().test_step(data)  # type: ignore[misc]
        state = self._catalog
        if state.candidates is None:
            raise ValueError("catalog metrics need the catalog's embeddings: call model.evaluate (or fit with "
                             "validation_data), which computes them first")
        queries = self.query_tower(data["user"], training=False)  # type: ignore[attr-defined]
        values = catalog_metric_values(queries, state.candidates, data["relevant"], data["exclude"],
                                       data.get("relevant_warm"), tuple(self.catalog_ks))
        metrics = state.metrics
        for name, (value, weight) in values.items():
            if name in metrics:  # without warm flags, the _warm/_cold metrics stay empty
                metrics[name].update_state(value, sample_weight=weight)
        return {name: metric.result() for name, metric in metrics.items()}


def _is_catalog_dataset(x: Any) -> bool:
    spec = getattr(x, "element_spec", None)
    return isinstance(spec, dict) and "relevant" in spec
