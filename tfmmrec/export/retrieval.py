"""The retrieval SavedModel: raw ids in, top-K item ids and scores out, TF Serving ready.

Signatures (all inputs have a leading batch dimension, so both REST formats work):

``serving_default``
  inputs: ``user_id`` string [B]; ``recent_item_ids`` string [B, R] (optional; "" pads rows);
  ``exclude_item_ids`` string [B, E] (optional; "" pads rows); ``k`` int32 [B] (optional,
  default: the maximum fixed at export; the batch is answered with its largest ``k``).
  A single row of an optional input (shape [1, ...]) applies to every user of the batch.
  outputs: ``item_ids`` string [B, K], ``scores`` float32 [B, K] (cosine similarity, higher is
  better), ``query_source`` int32 [B]. Where exclusions leave fewer than K items, a row ends in
  padding: item id ``""`` with score ``-inf`` (never an excluded item).
  An empty batch, or a non-optional-shaped input, fails with an error naming the input.

  Which query a row uses (``query_source``):
  0. a known user: that user's query-tower embedding. Recent items do not change it today
     (the query tower has no history input yet); pass them in ``exclude_item_ids`` to hide them.
  1. an unknown user with at least one known recent item: the normalised mean of the recent
     items' embeddings in the index (history-based cold start).
  2. an unknown user without known recent items: the normalised mean of all known users'
     embeddings (a "typical user", i.e. broadly popular taste) -- never the untrained OOV row.
  ``k`` < 1 or above the maximum fails the request with an error that states the maximum.

``recommend_new_items``
  the inputs and outputs of ``serving_default``, ranking only the index's *new* items: those
  without training interactions (cold items, and items added by ``reindex``), e.g. for a "new
  arrivals" slot. Every candidate there is embedded from content alone, so they are ranked among
  themselves (the "cold pool" of benchmarks/README.md), whatever their scores against warm
  items' (``cold_scale``). Where fewer than K new items are left, a row ends in padding.
  (A signature of its own, not an input of ``serving_default``: a Python caller of a loaded
  signature must pass every input, so a new one would break them.)

``embed_query``
  ``user_id`` string [B] -> ``embedding`` float32 [B, d] (fallback 2 for unknown users),
  ``known`` bool [B].

``embed_item_content`` (models with content; see ``export.content``)
  one input per raw modality (text string / encoded image bytes / encoded audio bytes; empty =
  missing, masked), per categorical field (string, "" = unknown) and per numeric field
  (float32, NaN = unknown) -> ``embedding`` float32 [B, d]: the vector to index a new item by.

The index is brute force (a matmul and ``top_k``: core ops, served by the standard TF Serving
binary). ``index="scann"`` builds a ScaNN index instead (approximate; needs the ``scann``
package and its custom ops wherever the export is loaded: ``import scann`` before
``tf.saved_model.load``; the standard TF Serving binary cannot serve it). With ScaNN, the
``max_k`` nearest items are retrieved first and exclusions (and ``recommend_new_items``' filter)
are applied among those.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmmrec.export.content import ContentEncoder
from tfmmrec.export.versioning import save_versioned

QUERY_FROM_USER, QUERY_FROM_RECENT_ITEMS, QUERY_FROM_MEAN_USER = 0, 1, 2


class QueryEncoder(tf.Module):
    """Raw user id -> query embedding, with the mean known user as the fallback for unknown ids."""

    def __init__(self, user_ids: np.ndarray, query_tower: keras.Model) -> None:
        super().__init__()
        keys = tf.constant([str(u) for u in user_ids], tf.string)
        self.users = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            keys, tf.range(1, len(user_ids) + 1, dtype=tf.int64)), 0)
        self.tower = query_tower
        known = query_tower(np.arange(1, len(user_ids) + 1, dtype=np.int32)).numpy()
        mean = known.mean(axis=0)
        self.mean_query = tf.Variable(mean / max(np.linalg.norm(mean), 1e-12), trainable=False, name="mean_query")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def encode(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        index = self.users.lookup(user_id)
        known = index > 0
        emb = self.tower(tf.cast(index, tf.int32))
        mean = tf.broadcast_to(self.mean_query[None, :], tf.shape(emb))
        return {"embedding": tf.where(known[:, None], emb, mean), "known": known}


def _rows_like(values: tf.Tensor, batch: tf.Tensor, name: str) -> tf.Tensor:
    """Broadcast a [1, n] optional input to [batch, n]; any other row count must equal batch."""
    rows = tf.shape(values)[0]
    check = tf.debugging.Assert(tf.logical_or(tf.equal(rows, 1), tf.equal(rows, batch)),
                                [f"{name} must have 1 row or as many rows as user_id; rows, users =", rows, batch])
    with tf.control_dependencies([check]):  # a data dependency: a loaded signature runs no dangling op
        return tf.cond(tf.equal(rows, 1), lambda: tf.repeat(values, batch, axis=0), lambda: tf.identity(values))


class RetrievalServing(tf.Module):
    """Query encoder + item index (+ content encoder) with the signatures documented above.

    Args:
      query: raw user id -> embedding (a ``QueryEncoder``, or the one restored from an export).
      item_ids, item_embeddings: the index: catalog ids and their L2-normalised embeddings.
      max_k: the largest K a request may ask for (capped at the catalog size).
      content: raw content -> item embedding, for ``embed_item_content`` and ``reindex``.
      index: ``"brute_force"`` (default) or ``"scann"``.
      new_items: bool per item, True for items without training interactions (what
        ``recommend_new_items`` ranks); None = no item is new.
    """

    def __init__(self, query: Any, item_ids: np.ndarray, item_embeddings: np.ndarray, max_k: int,
                 content: ContentEncoder | Any | None = None, index: str = "brute_force",
                 scann_options: dict[str, Any] | None = None, new_items: np.ndarray | None = None) -> None:
        super().__init__()
        if index not in ("brute_force", "scann"):
            raise ValueError(f"index must be 'brute_force' or 'scann', not {index!r}")
        ids = [str(i) for i in item_ids]
        if len(set(ids)) != len(ids):
            raise ValueError("item ids in the index must be unique")
        self.query, self.content = query, content
        self.max_k = int(min(max_k, len(ids)))
        self.index_kind = tf.Variable(index, trainable=False, name="index_kind")
        self.max_k_var = tf.Variable(self.max_k, trainable=False, name="max_k")
        self.item_ids = tf.Variable(tf.constant(ids, tf.string), trainable=False, name="item_ids")
        self.item_embeddings = tf.Variable(np.asarray(item_embeddings, np.float32), trainable=False,
                                           name="item_embeddings")
        new_items = np.zeros(len(ids), bool) if new_items is None else np.asarray(new_items, bool)
        if new_items.shape != (len(ids),):
            raise ValueError(f"new_items must have one flag per item ({len(ids)}), got shape {new_items.shape}")
        self.item_is_new = tf.Variable(new_items, trainable=False, name="item_is_new")
        self.items = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(ids, tf.string), tf.range(len(ids), dtype=tf.int64)), -1)
        self.scann = None
        if index == "scann":
            import tensorflow_recommenders as tfrs

            from tfmmrec._deps_check import require_scann
            require_scann()
            options = {"num_leaves": max(1, min(1000, int(np.sqrt(len(ids))))), "num_leaves_to_search": 50,
                       "num_reordering_candidates": max(100, self.max_k), **(scann_options or {})}
            options["num_leaves_to_search"] = min(options["num_leaves_to_search"], options["num_leaves"])
            self.scann = tfrs.layers.factorized_top_k.ScaNN(k=self.max_k, **options)
            self.scann.index(tf.constant(item_embeddings, tf.float32), tf.range(len(ids), dtype=tf.int32))
        empty = tf.constant([[""]])

        def recommend(user_id: tf.Tensor, recent_item_ids: tf.Tensor = empty, exclude_item_ids: tf.Tensor = empty,
                      k: tf.Tensor = tf.constant([self.max_k], tf.int32)) -> dict[str, tf.Tensor]:  # noqa: B008
            return self._recommend(user_id, recent_item_ids, exclude_item_ids, k)

        def recommend_new_items(user_id: tf.Tensor, recent_item_ids: tf.Tensor = empty,
                                exclude_item_ids: tf.Tensor = empty,
                                k: tf.Tensor = tf.constant([self.max_k], tf.int32)  # noqa: B008
                                ) -> dict[str, tf.Tensor]:
            return self._recommend(user_id, recent_item_ids, exclude_item_ids, k, new_items_only=True)

        # Python defaults become the SignatureDef's ``defaults``: TF Serving feeds them for
        # inputs a request leaves out, which is what makes these inputs optional.
        specs = [tf.TensorSpec([None], tf.string, name="user_id"),
                 tf.TensorSpec([None, None], tf.string, name="recent_item_ids"),
                 tf.TensorSpec([None, None], tf.string, name="exclude_item_ids"),
                 tf.TensorSpec([None], tf.int32, name="k")]
        self.recommend = tf.function(recommend, input_signature=specs)
        self.recommend_new_items = tf.function(recommend_new_items, input_signature=specs)
        if content is not None:
            self.embed_item_content = tf.function(lambda *args: self.content.embed(*args),
                                                  input_signature=self.content_input_specs)

    def _history(self, recent: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        index = self.items.lookup(recent)
        valid = tf.cast(index >= 0, tf.float32)
        emb = tf.gather(self.item_embeddings, tf.maximum(index, 0)) * valid[..., None]
        count = tf.reduce_sum(valid, axis=1)
        return tf.math.l2_normalize(tf.reduce_sum(emb, axis=1), axis=-1), count > 0

    def _recommend(self, user_id: tf.Tensor, recent_item_ids: tf.Tensor, exclude_item_ids: tf.Tensor,
                   k: tf.Tensor, new_items_only: bool = False) -> dict[str, tf.Tensor]:
        batch = tf.shape(user_id)[0]
        check = tf.debugging.Assert(batch > 0, ["user_id: the batch is empty; send at least one user"])
        with tf.control_dependencies([check]):
            batch = tf.identity(batch)
        recent = _rows_like(recent_item_ids, batch, "recent_item_ids")
        exclude = _rows_like(exclude_item_ids, batch, "exclude_item_ids")
        k = tf.reshape(_rows_like(k[:, None], batch, "k"), [-1])
        top = tf.minimum(tf.reduce_max(k), self.max_k)  # the assert below reports a k above the maximum
        check = tf.debugging.Assert(tf.logical_and(tf.reduce_min(k) >= 1, tf.reduce_max(k) <= self.max_k),
                                    [f"k must be between 1 and {self.max_k} (the maximum fixed at export); got", k])
        with tf.control_dependencies([check]):
            top = tf.identity(top)
        user = self.query.encode(user_id)
        history, has_history = self._history(recent)
        use_history = tf.logical_and(tf.logical_not(user["known"]), has_history)
        q = tf.where(use_history[:, None], history, user["embedding"])
        source = tf.where(user["known"], QUERY_FROM_USER,
                          tf.where(has_history, QUERY_FROM_RECENT_ITEMS, QUERY_FROM_MEAN_USER))
        if self.scann is None:
            scores = tf.matmul(q, self.item_embeddings, transpose_b=True)
            candidates = tf.broadcast_to(tf.range(tf.shape(scores)[1], dtype=tf.int64)[None, :], tf.shape(scores))
        else:
            scores, found = self.scann(q)
            candidates = tf.cast(found, tf.int64)
        excluded = self.items.lookup(exclude)  # [b, e], -1 = not in the index / padding
        if self.scann is None:
            rows = tf.broadcast_to(tf.range(batch, dtype=tf.int64)[:, None], tf.shape(excluded))
            where = tf.boolean_mask(tf.stack([rows, excluded], -1), excluded >= 0)
            scores = tf.tensor_scatter_nd_update(scores, where, tf.fill(tf.shape(where)[:1], -np.inf))
        else:
            hit = tf.reduce_any(tf.equal(candidates[:, :, None], excluded[:, None, :]), axis=2)
            scores = tf.where(hit, -np.inf, scores)
        if new_items_only:  # the other items are no candidates
            new = self.item_is_new[None, :] if self.scann is None else tf.gather(self.item_is_new, candidates)
            scores = tf.where(new, scores, -np.inf)
        best, pos = tf.math.top_k(scores, top)
        chosen = tf.gather(candidates, pos, batch_dims=1)
        padding = tf.equal(best, -np.inf)  # fewer than K items left after the exclusions
        return {"item_ids": tf.where(padding, "", tf.gather(self.item_ids, chosen)), "scores": best,
                "query_source": tf.cast(source, tf.int32)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def embed_query(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        return self.query.encode(user_id)

    def signatures(self) -> dict[str, Any]:
        out = {"serving_default": self.recommend, "recommend_new_items": self.recommend_new_items,
               "embed_query": self.embed_query}
        if self.content is not None:
            out["embed_item_content"] = self.embed_item_content
        return out

    @property
    def content_input_specs(self) -> list[tf.TensorSpec]:
        """The ``embed_item_content`` inputs in call order (also for a content path restored from an export)."""
        return list(self.content.embed.concrete_functions[0].structured_input_signature[0]) \
            if not isinstance(self.content, ContentEncoder) else list(self.content.embed.input_signature)


def export_retrieval(base: str | Path, name: str, serving: RetrievalServing, version: int | None = None,
                     assets_extra: dict[str, bytes] | None = None) -> Path:
    """Save ``serving`` as ``base/name/<version>`` (see ``versioning.save_versioned``)."""
    options = None
    if serving.scann is not None:
        options = tf.saved_model.SaveOptions(namespace_whitelist=["Scann"])
    return save_versioned(serving, base, name, serving.signatures(), version, options=options,
                          assets_extra=assets_extra)
