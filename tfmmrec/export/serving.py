"""Serving modules with explicit, named signatures, for retrieval and ranking.

Both take raw string ids: the id -> index lookups are inside the graph, so a client sends what
it has (``"u0042"``), and unknown ids map to index 0 (see ``models.features``) instead of failing.
Only core TensorFlow ops end up in the graph, so the exports load with plain ``tensorflow``
and in the standard TF Serving binary.

Signatures:

- retrieval ``serving_default``: ``user_id`` string [batch] -> ``item_ids`` string [batch, k],
  ``scores`` float32 [batch, k] (cosine similarity of the two towers' embeddings; higher is better).
- retrieval ``embed_query``: ``user_id`` string [batch] -> ``embedding`` float32 [batch, d].
- ranking ``serving_default``: ``user_id``, ``item_id`` string [batch] -> ``score`` float32
  [batch] (probability of interaction for implicit/binary feedback, else predicted rating).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from tfmmrec.export.versioning import save_versioned


class RetrievalServing(tf.Module):
    def __init__(self, user_ids: np.ndarray, query_tower: keras.Model, item_ids: np.ndarray,
                 item_embeddings: np.ndarray, k: int) -> None:
        super().__init__()
        self.user_lookup = keras.layers.StringLookup(vocabulary=list(user_ids), num_oov_indices=1)
        self.query_model = keras.Sequential([self.user_lookup, query_tower])
        self.index = tfrs.layers.factorized_top_k.BruteForce(self.query_model, k=min(k, len(item_ids)))
        self.index.index(candidates=tf.constant(item_embeddings, tf.float32),
                         identifiers=tf.constant(list(item_ids), tf.string))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def recommend(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        scores, ids = self.index(user_id)
        return {"item_ids": ids, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def embed_query(self, user_id: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"embedding": self.query_model(user_id)}


class RankingServing(tf.Module):
    def __init__(self, user_ids: np.ndarray, item_ids: np.ndarray, model: keras.Model, binary: bool) -> None:
        super().__init__()
        self.user_lookup = keras.layers.StringLookup(vocabulary=list(user_ids), num_oov_indices=1)
        self.item_lookup = keras.layers.StringLookup(vocabulary=list(item_ids), num_oov_indices=1)
        self.model, self.binary = model, binary

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([None], tf.string, name="item_id")])
    def score(self, user_id: tf.Tensor, item_id: tf.Tensor) -> dict[str, tf.Tensor]:
        out = self.model({"user": self.user_lookup(user_id), "item": self.item_lookup(item_id)})
        return {"score": tf.sigmoid(out) if self.binary else out}


def export_retrieval(base: str | Path, name: str, serving: RetrievalServing, version: int | None = None) -> Path:
    return save_versioned(serving, base, name, {"serving_default": serving.recommend,
                                                 "embed_query": serving.embed_query}, version)


def export_ranking(base: str | Path, name: str, serving: RankingServing, version: int | None = None) -> Path:
    return save_versioned(serving, base, name, {"serving_default": serving.score}, version)
