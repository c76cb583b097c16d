"""Full-catalog retrieval metrics as Keras metrics: ``model.evaluate`` and ``fit(validation_data=...)``.

The protocol is the one of ``tfmmrec.evaluate.retrieval`` (every catalog item a candidate, the
user's ``exclude`` items removed, binary relevance of the user's distinct held-out items, averages
over users with at least one relevant item of the group), computed in TensorFlow on one batch of
users at a time so that it can run inside Keras's ``test_step``:

- :func:`catalog_metric_values` scores a batch of queries against all candidates and returns each
  user's Recall/NDCG/HitRate/MRR/MAP@K per item group, with a per-user weight (1 if the user has a
  relevant item of the group), i.e. what a weighted mean over users averages;
- :class:`CatalogMeans` is the one Keras metric that accumulates all of them (two variables);
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
group without users reports 0 (a mean of nothing), where ``evaluate_retrieval`` says NaN.
Coverage@K (a catalog-wide union, not a mean over users) stays in ``evaluate_retrieval``.

``restrict_catalog(rows)`` ranks among some catalog rows only, e.g. the cold items: the ``_cold``
metrics are then the "cold pool" ones (cold held-out items ranked among the cold items), the
signal a content tower is selected by (tfmmrec.train.coldstart), where in the full catalog a few
dozen cold hits decide.
"""
from __future__ import annotations

from typing import Any

import numpy as np
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
                          relevant_warm: tf.Tensor | None = None, ks: tuple[int, ...] = DEFAULT_CATALOG_KS,
                          candidate_bias: tf.Tensor | None = None) -> dict[str, tuple[tf.Tensor, tf.Tensor]]:
    """Per-user catalog metrics of one batch, to be averaged over users (:class:`CatalogMeans`).

    Args:
      queries: ``[b, d]`` query embeddings.
      candidates: ``[n, d]`` embeddings of all catalog items (row r = item row r).
      relevant: ``[b, R]`` int, each user's distinct held-out item rows, ``-1`` = padding.
      exclude: ``[b, E]`` int, item rows not to recommend (training, and for test validation items).
      relevant_warm: ``[b, R]`` bool, whether each relevant item had training interactions; with it
        the ``_warm`` and ``_cold`` groups are scored too.
      candidate_bias: ``[n]`` float, 0 for the candidates to rank and ``-inf`` for the others
        (:meth:`CatalogEvaluation.restrict_catalog`); None = every item is a candidate.
    Returns:
      ``{metric_name: (values [b], weights [b])}``: the user's value and 1 where the user has a
      relevant item of the group (0 otherwise, the value is then 0); and ``users``,
      ``users_warm``, ``users_cold``: 1 per user of the group (summed, not averaged).
    """
    num_items = tf.shape(candidates)[0]
    batch = tf.shape(queries)[0]
    max_k = tf.minimum(max(ks), num_items)
    scores = tf.matmul(queries, candidates, transpose_b=True)
    if candidate_bias is not None:
        scores += tf.cast(candidate_bias, scores.dtype)[None, :]
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
    # Every cutoff from running sums over the top-K columns: one pass per group, a gather per K.
    cutoffs = tf.minimum(tf.constant(ks, tf.int32), max_k) - 1  # column of the K-th position
    out: dict[str, tuple[tf.Tensor, tf.Tensor]] = {}
    for group, members in groups.items():
        member = tf.cast(members, tf.float32)
        n_rel = tf.math.unsorted_segment_sum(member, rel_rows, batch)
        hits = tf.math.unsorted_segment_sum(tf.cast(match, tf.float32) * member[:, None], rel_rows, batch)
        weight = tf.cast(n_rel > 0, tf.float32)
        cum_hits = tf.cumsum(hits, axis=1)
        at = {"hits": tf.gather(cum_hits, cutoffs, axis=1),  # [b, len(ks)]
              "dcg": tf.gather(tf.cumsum(hits * discounts, axis=1), cutoffs, axis=1),
              "ap": tf.gather(tf.cumsum(cum_hits / positions * hits, axis=1), cutoffs, axis=1)}
        first = tf.cast(tf.argmax(hits, axis=1), tf.int32)  # position of the first hit (0 if none)
        ideal_n = tf.minimum(n_rel[:, None], tf.cast(cutoffs + 1, tf.float32))  # [b, len(ks)]
        ideal = tf.gather(ideal_cumulative, tf.maximum(tf.cast(ideal_n, tf.int32) - 1, 0))
        w = weight[:, None]
        values = {
            "recall": tf.math.divide_no_nan(at["hits"], n_rel[:, None]),
            "ndcg": tf.math.divide_no_nan(at["dcg"], ideal * w),
            "hitrate": tf.cast(at["hits"] > 0, tf.float32),
            "mrr": tf.where(at["hits"] > 0, 1.0 / tf.cast(first + 1, tf.float32)[:, None], 0.0),
            "map": tf.math.divide_no_nan(at["ap"], ideal_n),
        }
        for i, k in enumerate(ks):
            for metric in CATALOG_METRICS:
                out[metric_name(metric, k, group)] = (values[metric][:, i] * weight, weight)
        out[f"users{group}"] = (weight, tf.ones_like(weight))
    return out


class CatalogMeans(keras.metrics.Metric):
    """Weighted means of many named per-user values in one pair of variables (totals, weights):
    one update per batch instead of one ``Mean`` metric per name, which keeps the evaluation step's
    graph small (its tracing took seconds with 45 separate metrics). Names starting with ``users``
    are sums (a count of users), the others means."""

    def __init__(self, names: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names = list(names)
        self.totals = self.add_weight(name="totals", shape=(len(names),), initializer="zeros")
        self.counts = self.add_weight(name="counts", shape=(len(names),), initializer="zeros")
        self._is_sum = tf.constant([n.startswith("users") for n in names])

    def update_state(self, values: dict[str, tuple[tf.Tensor, tf.Tensor]]) -> None:  # type: ignore[override]
        stacked = tf.stack([values[n][0] for n in self.names], axis=1)  # already weighted
        weights = tf.stack([values[n][1] for n in self.names], axis=1)
        self.totals.assign_add(tf.reduce_sum(stacked, 0))
        self.counts.assign_add(tf.reduce_sum(weights, 0))

    def result(self) -> tf.Tensor:
        return tf.where(self._is_sum, self.totals, tf.math.divide_no_nan(self.totals, self.counts))

    def results(self) -> dict[str, tf.Tensor]:
        """``{name: value}``."""
        values = self.result()
        return {name: values[i] for i, name in enumerate(self.names)}

    def reset_state(self) -> None:
        self.totals.assign(tf.zeros_like(self.totals))
        self.counts.assign(tf.zeros_like(self.counts))


class _CatalogState:
    """Evaluation-only state kept off the model's tracked weights (a plain object: Keras tracks
    neither it nor what it holds), so checkpoints, ``get_weights`` and exports are unchanged."""

    def __init__(self) -> None:
        self.candidates: tf.Variable | None = None
        self.metrics: CatalogMeans | None = None
        self.candidate_bias: tf.Variable | None = None  # restrict_catalog: 0 = a candidate, -inf = not


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
        num_items = self._num_catalog_items
        parts = [self.item_tower(tf.range(start + 1, min(start + self.catalog_batch_size, num_items) + 1),  # type: ignore[attr-defined]
                                 training=False)
                 for start in range(0, num_items, self.catalog_batch_size)]
        embeddings = tf.concat(parts, 0)
        self._store("candidates", embeddings)
        return embeddings

    @property
    def _num_catalog_items(self) -> int:
        return int(self.item_tower.table.num_rows) - 1  # type: ignore[attr-defined]

    def _store(self, name: str, value: Any) -> None:
        """Put ``value`` into the evaluation state's variable ``name``: assigned in place, or a new
        variable when there is none of its shape yet (the compiled test step must then capture it)."""
        state = self._catalog
        variable = getattr(state, name)
        if variable is None or variable.shape != value.shape:
            with tf.init_scope():
                setattr(state, name, tf.Variable(value, trainable=False, name=f"catalog_{name}"))
            self.test_function = None
        else:
            variable.assign(value)

    def restrict_catalog(self, rows: np.ndarray | None) -> None:
        """Rank among the catalog rows ``rows`` only (item index - 1), e.g. the cold items, until
        called again with ``None`` (every item). The ``_cold`` metrics of a restriction to the cold
        items are the cold-pool metrics; the other groups' relevant items outside ``rows`` count
        as misses, so read only the group the restriction is made for."""
        state = self._catalog
        if rows is None:
            if state.candidate_bias is not None:
                state.candidate_bias, self.test_function = None, None
            return
        num_items = self._num_catalog_items
        rows = np.asarray(rows, np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= num_items):
            raise ValueError(f"restrict_catalog: rows must lie in [0, {num_items}), got {rows.min()}..{rows.max()}")
        bias = np.full(num_items, -np.inf, np.float32)
        bias[rows] = 0.0
        self._store("candidate_bias", bias)

    def _catalog_metrics(self, with_groups: bool = True) -> CatalogMeans:
        state = self._catalog
        groups = GROUPS if with_groups else ("",)
        names = [metric_name(m, k, g) for g in groups for k in self.catalog_ks for m in CATALOG_METRICS]
        names += [f"users{g}" for g in groups]
        if state.metrics is None or state.metrics.names != names:
            with self.distribute_strategy.scope():  # type: ignore[attr-defined]
                state.metrics = CatalogMeans(names, name="catalog_metrics")
            self.test_function = None
        return state.metrics

    def evaluate(self, x: Any = None, *args: Any, **kwargs: Any) -> Any:
        if not _is_catalog_dataset(x):
            return super().evaluate(x, *args, **kwargs)  # type: ignore[misc]
        self.embed_catalog()
        metrics = self._catalog_metrics("relevant_warm" in x.element_spec)
        metrics.reset_state()
        return_dict = kwargs.pop("return_dict", False)
        super().evaluate(x, *args, return_dict=True, **kwargs)  # type: ignore[misc]
        # Read the totals here, across replicas: under a multi-replica strategy the step's own
        # return value is summed over the replicas (Keras re-reads only its own metrics).
        results = {name: float(value) for name, value in metrics.results().items()}
        return results if return_dict else list(results.values())

    def test_step(self, data: Any) -> dict[str, tf.Tensor]:
        if not (isinstance(data, dict) and "relevant" in data):
            return super().test_step(data)  # type: ignore[misc]
        state = self._catalog
        if state.candidates is None:
            raise ValueError("catalog metrics need the catalog's embeddings: call model.evaluate (or fit with "
                             "validation_data), which computes them first")
        queries = self.query_tower(data["user"], training=False)  # type: ignore[attr-defined]
        values = catalog_metric_values(queries, state.candidates, data["relevant"], data["exclude"],
                                       data.get("relevant_warm"), tuple(self.catalog_ks), state.candidate_bias)
        metrics = state.metrics
        assert metrics is not None  # made by evaluate
        metrics.update_state(values)
        return metrics.results()


def _is_catalog_dataset(x: Any) -> bool:
    spec = getattr(x, "element_spec", None)
    return isinstance(spec, dict) and "relevant" in spec
