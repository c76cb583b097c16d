"""One item index for warm and cold items: a collaborative tower, and a content tower aligned to it.

A single tower that adds an id embedding and a content embedding (with ID dropout so that
content learns to stand alone) makes warm items pay for cold ones: on every real dataset we
measured, its warm-item quality fell below the ID-only model's, and its cold-item quality below
a tower on content alone (issue 11). So the two jobs get two towers, in the spirit of DropoutNet
(Volkovs et al. 2017) and ALDI (Huang et al., SIGIR 2023):

- the **warm tower** (the "teacher") is trained first, with the query tower, on the training
  interactions: by default item ids only, i.e. the ID-only model, so warm items keep ID-only
  quality by construction;
- the **content tower** (the "student": modalities, categorical and numeric fields, no id) is
  trained next against the *frozen* query tower, with the same retrieval loss (so its scores are
  on the teacher's scale) plus an alignment loss pulling each warm item's content embedding onto
  its warm-tower embedding (``1 - cosine``): content learns to land where collaborative filtering
  puts an item;
- the **served embedding** of an item with ``n`` training interactions is
  ``(g + (1 - g) * s) * normalize(g * warm + (1 - g) * content)`` with ``g = g(n) = n / (n + c)``
  (``g = 0`` for ``n = 0``; ``c = 0``: warm items are their warm embedding), so rarely seen items
  can borrow content; ``s`` (``cold_scale``) calibrates content-only scores against warm ones:
  without it, measured on MovieLens, cold items' cosine scores came out too high and pushed
  relevant warm items out of the top K. ``c`` and ``s`` are chosen on the validation split. All
  items are scored against one query tower: one index, comparable scores.

Cold items, and new items embedded from raw content by an export (``embed_item_content``,
``reindex``), are the content tower's output: :attr:`WarmColdItemTower.content_tower` is what the
export's content path runs.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmmrec.models.retrieval import TwoTowerRetrieval, query_inputs
from tfmmrec.models.towers import ItemTower, QueryTower


@keras.utils.register_keras_serializable(package="tfmmrec")
class WarmColdItemTower(keras.Model):
    """Item index -> ``normalize(g(n) * warm_tower(item) + (1 - g(n)) * content_tower(item))``.

    ``n`` is the item's number of training interactions (a non-trainable table, filled by
    :meth:`set_counts`) and ``g(n) = n / (n + blend_c)``, 0 for ``n = 0``; the result is scaled by
    ``g + (1 - g) * cold_scale``. ``blend_c`` and ``cold_scale`` are variables (saved with the
    weights), so they can be chosen on validation after training (:func:`blend_embeddings` is the
    same formula in numpy, for that search).

    The attributes the rest of tfmmrec reads from an item tower (``table``, ``use_content``,
    ``embedding_dim``, ``fused_content``) are the content tower's: it is the part that embeds
    an item from its content alone.
    """

    def __init__(self, warm_tower: ItemTower, content_tower: ItemTower, blend_c: float = 0.0,
                 cold_scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if warm_tower.embedding_dim != content_tower.embedding_dim:
            raise ValueError(f"warm and content towers must have one embedding size, got "
                             f"{warm_tower.embedding_dim} and {content_tower.embedding_dim}")
        self.warm_tower, self.content_tower = warm_tower, content_tower
        self.embedding_dim = content_tower.embedding_dim
        self.initial_blend_c = float(blend_c)
        self.train_counts = self.add_weight(name="train_counts", shape=(content_tower.table.num_rows,),
                                            initializer=keras.initializers.Zeros(), trainable=False)
        self.blend_c = self.add_weight(name="blend_c", shape=(), trainable=False,
                                       initializer=keras.initializers.Constant(float(blend_c)))
        self.cold_scale = self.add_weight(name="cold_scale", shape=(), trainable=False,
                                          initializer=keras.initializers.Constant(float(cold_scale)))

    @property
    def table(self) -> keras.layers.Layer:
        return self.content_tower.table

    @property
    def use_content(self) -> bool:
        return True

    def set_counts(self, counts: np.ndarray) -> None:
        """``counts[i]``: training interactions of item index i (``[num_items + 1]``)."""
        self.train_counts.assign(np.asarray(counts, np.float32))

    def warm_share(self, item: tf.Tensor) -> tf.Tensor:
        """``g(n)`` per item, ``[batch]``: the weight of the warm embedding (0 for cold items)."""
        n = tf.gather(self.train_counts, tf.cast(item, tf.int32))
        return tf.where(n > 0, n / (n + self.blend_c), tf.zeros_like(n))

    def fused_content(self, item: tf.Tensor, training: bool | None = None) -> tf.Tensor | None:
        return self.content_tower.fused_content(item, training)

    def call(self, item: tf.Tensor, training: bool | None = None,
             content_delta: dict[str, tf.Tensor] | None = None) -> tf.Tensor:
        g = self.warm_share(item)[:, None]
        warm = self.warm_tower(item, training=training)
        content = self.content_tower(item, training=training, content_delta=content_delta)
        return (g + (1.0 - g) * self.cold_scale) * tf.math.l2_normalize(g * warm + (1.0 - g) * content, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {"warm_tower": keras.layers.serialize(self.warm_tower),
                "content_tower": keras.layers.serialize(self.content_tower),
                "blend_c": float(self.blend_c.numpy()), "cold_scale": float(self.cold_scale.numpy()),
                "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WarmColdItemTower:
        config = dict(config)
        config["warm_tower"] = keras.layers.deserialize(config["warm_tower"])
        config["content_tower"] = keras.layers.deserialize(config["content_tower"])
        return cls(**config)


def blend_embeddings(warm: np.ndarray, content: np.ndarray, counts: np.ndarray, blend_c: float,
                     cold_scale: float) -> np.ndarray:
    """:meth:`WarmColdItemTower.call` in numpy, on precomputed tower outputs ``[n, d]`` and counts ``[n]``."""
    n = np.asarray(counts, np.float64)[:, None]
    g = np.where(n > 0, n / np.maximum(n + blend_c, 1e-12), 0.0)
    mixed = g * warm + (1.0 - g) * content
    mixed /= np.maximum(np.linalg.norm(mixed, axis=1, keepdims=True), 1e-6)  # as tf.math.l2_normalize
    return ((g + (1.0 - g) * cold_scale) * mixed).astype(np.float32)


def alignment_loss(content: tf.Tensor, warm: tf.Tensor) -> tf.Tensor:
    """``sum(1 - cos(content, warm))`` over the batch (both L2-normalised; ``warm`` is a fixed
    target). Summed, as the TFRS retrieval loss is, so its weight is batch-size free relative to it."""
    return tf.reduce_sum(1.0 - tf.reduce_sum(content * tf.stop_gradient(warm), axis=-1))


class ContentStudent(TwoTowerRetrieval):
    """Trains a content tower against a frozen query tower and a frozen warm tower.

    Loss = the retrieval loss of (frozen queries, content embeddings of the positives), with the
    same negatives, temperature and logQ correction as the warm model, so content scores land on
    the warm model's scale, + ``align_weight`` x :func:`alignment_loss` to the warm embeddings.
    With ``warm_negatives`` the batch's *warm* embeddings are negatives too (the positive's own
    warm copy removed as an accidental hit): in the served index a cold item competes with warm
    items' warm embeddings, so that is what its content embedding is trained to beat.
    Only the content tower is trained (the others are set non-trainable while it is compiled).
    """

    def __init__(self, query_tower: QueryTower, content_tower: ItemTower, warm_tower: keras.Model, *,
                 align_weight: float = 1.0, warm_negatives: bool = False, **task_options: Any) -> None:
        super().__init__(query_tower, content_tower, **task_options)
        self.warm_tower, self.align_weight, self.warm_negatives = warm_tower, align_weight, warm_negatives
        if warm_negatives and (self.mixed_negatives or not self.remove_accidental_hits):
            raise ValueError("warm_negatives needs remove_accidental_hits (each positive's own warm copy is a "
                             "candidate) and no mixed_negatives")

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False,
                     content_delta: dict[str, tf.Tensor] | None = None) -> tf.Tensor:
        queries = tf.stop_gradient(self.query_tower(query_inputs(features), training=False))
        content = self.item_tower(features["item"], training=training, content_delta=content_delta)
        warm = tf.stop_gradient(self.warm_tower(features["item"], training=False))
        if self.warm_negatives:
            loss = self.against_warm_loss(queries, content, warm, features)
        else:
            loss = self.retrieval_loss(queries, content, features, training)
        if self.align_weight:
            loss += self.align_weight * alignment_loss(content, warm)
        return loss

    def against_warm_loss(self, queries: tf.Tensor, content: tf.Tensor, warm: tf.Tensor,
                          features: dict[str, tf.Tensor]) -> tf.Tensor:
        """The retrieval loss with candidates ``[content; warm]`` of the (cross-replica) batch: each
        positive's content embedding against the other items' content *and* warm embeddings."""
        ids = tf.cast(features["item"], tf.int32)
        probs = features["item_prob"] if "item_prob" in features else tf.ones_like(content[:, 0])
        content, all_ids, all_probs, positives = self.share_candidates(content, ids, probs)
        warm = self.share_candidates(warm, ids, probs)[0]
        # Positives stay in the first columns; a warm copy has its item's id and probability, so
        # accidental-hit removal drops each query's own warm copy.
        return self.task(queries, tf.concat([content, warm], 0), sample_weight=features.get("weight"),
                         candidate_sampling_probability=tf.concat([all_probs, all_probs], 0) if self.logq else None,
                         candidate_ids=tf.concat([all_ids, all_ids], 0), positive_indices=positives)
