"""Biased matrix factorisation for explicit ratings: ``mu + b_u + b_i + p_u . q_i``.

Koren, Bell & Volinsky 2009, "Matrix Factorization Techniques for Recommender Systems". On
MovieLens ratings this textbook model, regularised per rating and trained to convergence, beat
DCN-v2 and DeepFM over ids, content and the users table by 0.012-0.022 test RMSE on every seed
(benchmarks/README.md, "A plain biased matrix factorisation beats tfmmrec's ranker"): the deep
part overfits within a few epochs, long before the id factors converge, and content fields cost
rating accuracy there. It has the rankers' interface (``{"user", "item"}`` model indices in, a
score out, :meth:`fields` / :meth:`logit` for the export's ``explain``), so it trains, selects
and exports as they do; it reads no content, so an item without an id slot (a cold item) is
scored ``mu + b_u``: the user's offset from the mean, nothing about the item.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

from tfmmrec.models.features import ItemFeatureTable
from tfmmrec.models.ranking import DeepFM


@keras.utils.register_keras_serializable(package="tfmmrec")
class MatrixFactorization(DeepFM):
    """``{"user": int, "item": int}`` (model indices) -> ``global_bias + b_u + b_i + p_u . q_i``.

    Args:
      factors: size of ``p_u`` and ``q_i``.
      l2: weight of matrix factorisation's per-rating penalty ``|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2``
        on each training example's rows, averaged over the batch: a frequent id is penalised as often
        as it is trained (a penalty on the whole table each step, Keras' ``embeddings_regularizer``,
        weighs a row seen once like one seen a thousand times).
    """

    def __init__(self, table: ItemFeatureTable, num_users: int, num_id_slots: int, factors: int = 64,
                 l2: float = 0.05, **kwargs: Any) -> None:
        super().__init__(table, num_users, num_id_slots, field_dim=factors, hidden_units=(), dropout=0.0,
                         use_content=False, id_dropout=0.0, **kwargs)
        self.factors, self.l2 = factors, l2
        del self.deep  # no deep part: the dot product is the whole interaction
        small, zeros = lambda: keras.initializers.RandomNormal(0.0, 0.01), keras.initializers.Zeros()  # noqa: E731
        self.user_vec = keras.layers.Embedding(num_users + 1, factors, embeddings_initializer=small(),
                                               name="user_factors")
        self.item_vec = keras.layers.Embedding(num_id_slots, factors, embeddings_initializer=small(),
                                               name="item_factors")
        self.user_bias = keras.layers.Embedding(num_users + 1, 1, embeddings_initializer=zeros, name="user_bias")
        self.item_bias = keras.layers.Embedding(num_id_slots, 1, embeddings_initializer=zeros, name="item_bias")

    def fields(self, features: dict[str, tf.Tensor], training: bool | None = None
               ) -> tuple[list[tf.Tensor], list[tf.Tensor], list[str]]:
        vecs, firsts, names = super().fields(features, training=training)
        if training and self.l2:
            rows = tf.concat(vecs + firsts, axis=-1)
            self.add_loss(self.l2 * tf.reduce_mean(tf.reduce_sum(tf.square(rows), axis=-1)))
        return vecs, firsts, names

    def logit(self, vecs: list[tf.Tensor], firsts: list[tf.Tensor], training: bool | None = None) -> tf.Tensor:
        user, item = vecs[0], vecs[1]
        return tf.reduce_sum(user * item, axis=-1) + tf.squeeze(tf.add_n(firsts), axis=-1) + self.global_bias

    def get_config(self) -> dict[str, Any]:
        return {"table": keras.layers.serialize(self.table), "num_users": self.num_users,
                "num_id_slots": self.num_id_slots, "factors": self.factors, "l2": self.l2, "name": self.name}
