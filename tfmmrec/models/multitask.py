"""Retrieval, ranking and item-category classification trained together on shared towers.

As in the TFRS multitask tutorial ("Multi-task recommenders"): one model, several tasks, a loss
that is their weighted sum. The towers learn from every task: the ranking head sharpens the
order among plausible items, and the auxiliary task -- predict the item's category from its
fused *content* alone (no id, no categorical fields, which would give the answer away) -- makes
the content path carry category, which is what a cold item has to be found by.

The ranking head is an MLP on ``[query, item]`` embeddings. With a ``target`` in the batch
(ratings, or 0/1 labels) it fits that (MSE or BCE); without one (implicit feedback) each positive
pair is labelled 1 and the pair of the same user with the next row's item 0 (BCE).
All three losses are summed over the batch, like the retrieval loss, so the weights compare tasks
per example.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

from tfmmrec.models.retrieval import TwoTowerRetrieval, query_inputs
from tfmmrec.models.towers import ItemTower, QueryTower


class MultitaskRetrieval(TwoTowerRetrieval):
    """A :class:`TwoTowerRetrieval` with a ranking head and a category head.

    Args:
      num_categories: codes of the category field, including the unknown code 0.
      category_field: which categorical column of the item table is the category.
      retrieval_weight, ranking_weight, category_weight: loss weights (0 switches a task off).
      ranking_hidden: hidden units of the ranking MLP.
      rating: the batch ``target`` is a rating (MSE) rather than a 0/1 label (BCE).
      **kwargs: passed to :class:`TwoTowerRetrieval`.
    """

    uses_target = True

    def __init__(self, query_tower: QueryTower, item_tower: ItemTower, *, num_categories: int,
                 category_field: int = 0, retrieval_weight: float = 1.0, ranking_weight: float = 1.0,
                 category_weight: float = 1.0, ranking_hidden: tuple[int, ...] = (64,), rating: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(query_tower, item_tower, **kwargs)
        self.category_field, self.num_categories = category_field, num_categories
        self.weights_ = {"retrieval": retrieval_weight, "ranking": ranking_weight, "category": category_weight}
        self.rating = rating
        self.ranking_head = keras.Sequential([keras.layers.Dense(u, activation="relu") for u in ranking_hidden]
                                             + [keras.layers.Dense(1)], name="ranking_head")
        self.category_head = keras.layers.Dense(num_categories, name="category_head")
        self.category_metric = keras.metrics.SparseCategoricalAccuracy(name="category_accuracy")

    def build_variables(self) -> None:
        """The towers' variables and those of the heads in use (a head's variables are otherwise
        created by the first step; a head whose task weighs 0 gets none, as in training)."""
        super().build_variables()
        if self.weights_["ranking"]:
            pair = tf.zeros([1, self.item_tower.embedding_dim])
            self.rank(pair, pair)
        if self.weights_["category"]:
            self.category_logits(tf.zeros([1], tf.int32))

    def rank(self, queries: tf.Tensor, items: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Ranking score ``[batch]`` (a logit, or a rating) of query/item embedding pairs."""
        return tf.squeeze(self.ranking_head(tf.concat([queries, items], -1), training=training), -1)

    def category_logits(self, item: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Category logits from the item's fused modalities (and numeric fields) alone, no id or categorical field."""
        fused = self.item_tower.fused_content(item, training)
        if fused is None:
            fused = tf.zeros([tf.shape(item)[0], self.item_tower.embedding_dim])
        return self.category_head(fused)

    def compute_loss(self, features: dict[str, tf.Tensor], training: bool = False,
                     content_delta: dict[str, tf.Tensor] | None = None) -> tf.Tensor:
        queries = self.query_tower(query_inputs(features), training=training)
        candidates = self.item_tower(features["item"], training=training, content_delta=content_delta)
        total = tf.constant(0.0)
        if self.weights_["retrieval"]:
            total += self.weights_["retrieval"] * self.retrieval_loss(queries, candidates, features, training)
        if self.weights_["ranking"]:
            if "target" in features:
                scores, targets = self.rank(queries, candidates, training), tf.cast(features["target"], tf.float32)
            else:
                negatives = tf.roll(candidates, shift=1, axis=0)
                scores = tf.concat([self.rank(queries, candidates, training),
                                    self.rank(queries, negatives, training)], 0)
                n = tf.shape(candidates)[0]
                targets = tf.concat([tf.ones([n]), tf.zeros([n])], 0)
            if self.rating:
                ranking = tf.reduce_sum(tf.square(scores - targets))
            else:
                ranking = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=scores))
            total += self.weights_["ranking"] * ranking
        if self.weights_["category"]:
            labels = self.item_tower.table(features["item"])["categorical"][:, self.category_field]
            logits = self.category_logits(features["item"], training)
            known = tf.cast(labels > 0, tf.float32)  # code 0: category unknown, nothing to learn
            xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            total += self.weights_["category"] * tf.reduce_sum(xent * known)
            self.category_metric.update_state(labels, logits, sample_weight=known)
        return total
