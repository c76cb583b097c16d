"""DeepFM ranking over sparse id fields and dense modality embeddings.

Guo et al. 2017, "DeepFM: A Factorization-Machine based Neural Network for CTR Prediction".
Every input becomes a field vector of size ``field_dim``: user id, item id, each categorical
column, and each modality embedding projected by its own Dense layer (zero when the item lacks
it); with a users table also each categorical user column and the user's numeric columns (one
Dense field), read from tables inside the model so that it still takes only user and item ids.
With ``history_length`` the user's training items are one more field: the mean of their own
embeddings (``history_field``, separate from the item field), as SVD++ (Koren 2008) adds the
items a user rated to the user's factor; the FM term then crosses it with the candidate item.
The score is first-order terms + FM pairwise interactions + an MLP over all fields.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

from tfmmrec.fusion import randomness
from tfmmrec.models.features import ItemFeatureTable, id_keep_mask


@keras.utils.register_keras_serializable(package="tfmmrec")
class DeepFM(keras.Model):
    """``{"user": int, "item": int}`` (model indices) -> score ``[batch]`` (a logit, or a rating).

    Args:
      use_content: include modality, categorical and numeric fields, and the user fields (False: ids only).
      id_dropout: share of training examples whose item-id field is hidden.
      user_feature_cardinalities: codes per categorical user column (``UserFeatures.cardinalities``).
      num_user_numeric: numeric user columns; fill both tables with :meth:`set_user_tables`.
      history_length: training items per user in the history field (0: none); fill the table with
        :meth:`set_user_history`.
    """

    def __init__(self, table: ItemFeatureTable, num_users: int, num_id_slots: int,
                 categorical_cardinalities: tuple[int, ...] = (), field_dim: int = 16,
                 hidden_units: tuple[int, ...] = (64, 32), dropout: float = 0.1, use_content: bool = True,
                 id_dropout: float = 0.0, user_feature_cardinalities: tuple[int, ...] = (),
                 num_user_numeric: int = 0, history_length: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.num_users, self.num_id_slots, self.field_dim = num_users, num_id_slots, field_dim
        self.categorical_cardinalities = tuple(categorical_cardinalities)
        self.hidden_units, self.dropout, self.use_content = tuple(hidden_units), dropout, use_content
        self.id_dropout = id_dropout
        emb = lambda n, d, name: keras.layers.Embedding(  # noqa: E731
            n, d, name=name, embeddings_regularizer=keras.regularizers.l2(1e-6))
        self.user_vec, self.user_bias = emb(num_users + 1, field_dim, "user_field"), emb(num_users + 1, 1, "user_bias")
        self.item_vec, self.item_bias = emb(num_id_slots, field_dim, "item_field"), emb(num_id_slots, 1, "item_bias")
        self.cat_vec = [emb(c, field_dim, f"cat{i}_field") for i, c in enumerate(self.categorical_cardinalities)]
        self.cat_bias = [emb(c, 1, f"cat{i}_bias") for i, c in enumerate(self.categorical_cardinalities)]
        self.dense_names = sorted(table.modality_dims) + (["_numeric"] if table.num_numeric else [])
        self.dense_vec = {m: keras.layers.Dense(field_dim, name=f"{m.lstrip('_')}_field") for m in self.dense_names}
        self.dense_bias = {m: keras.layers.Dense(1, name=f"{m.lstrip('_')}_bias") for m in self.dense_names}
        self.deep = keras.Sequential(
            [layer for units in self.hidden_units
             for layer in (keras.layers.Dense(units, activation="relu"), randomness.Dropout(dropout))]
            + [keras.layers.Dense(1)])
        self.global_bias = self.add_weight(name="global_bias", shape=(), initializer="zeros")
        self.user_feature_cardinalities = tuple(user_feature_cardinalities)
        self.num_user_numeric = num_user_numeric
        self.user_cat_vec = [emb(c, field_dim, f"user_cat{i}_field") for i, c in enumerate(user_feature_cardinalities)]
        self.user_cat_bias = [emb(c, 1, f"user_cat{i}_bias") for i, c in enumerate(user_feature_cardinalities)]
        zeros = keras.initializers.Zeros()
        if self.user_cat_vec:  # only then: a model without user fields keeps its variables (and checkpoints)
            self.user_codes = self.add_weight(name="user_codes", shape=(num_users + 1, len(self.user_cat_vec)),
                                              dtype=tf.int32, initializer=zeros, trainable=False)
        if num_user_numeric:
            self.user_numeric = self.add_weight(name="user_numeric", shape=(num_users + 1, num_user_numeric),
                                                initializer=zeros, trainable=False)
            self.user_numeric_vec = keras.layers.Dense(field_dim, name="user_numeric_field")
            self.user_numeric_bias = keras.layers.Dense(1, name="user_numeric_bias")
        self.history_length = history_length
        if history_length:
            self.user_history = self.add_weight(name="user_history", shape=(num_users + 1, history_length),
                                                dtype=tf.int32, initializer=zeros, trainable=False)
            self.history_vec = emb(num_id_slots, field_dim, "history_field")

    def set_user_tables(self, codes: Any = None, numeric: Any = None) -> None:
        """Store each user index's categorical codes ``[U + 1, fields]`` and z-scored numeric
        columns ``[U + 1, n]`` (``models.features.UserFeatures``); row 0 is the unknown user."""
        if codes is not None and self.user_cat_vec:
            self.user_codes.assign(tf.cast(codes, tf.int32))
        if numeric is not None and self.num_user_numeric:
            self.user_numeric.assign(tf.cast(numeric, tf.float32))

    def set_user_history(self, history: Any) -> None:
        """Store each user index's training items ``[U + 1, history_length]`` (item indices, 0 =
        padding; ``data.interactions.user_histories``' per-user table)."""
        self.user_history.assign(tf.cast(history, tf.int32))

    def history_field(self, user: tf.Tensor, item: tf.Tensor) -> tf.Tensor:
        """Mean history-field embedding of the user's items, ``[batch, field_dim]``, the candidate
        itself left out: a training example's target is among its user's training items, a held-out
        one never is, so leaving it out makes training see what serving sees."""
        history = tf.gather(self.user_history, tf.cast(user, tf.int32))
        mask = tf.cast((history > 0) & (history != tf.cast(item, tf.int32)[:, None]), tf.float32)
        vecs = self.history_vec(tf.gather(self.table.id_slot, history))
        return tf.reduce_sum(vecs * mask[..., None], 1) / tf.maximum(tf.reduce_sum(mask, 1, keepdims=True), 1.0)

    def fields(self, features: dict[str, tf.Tensor], training: bool | None = None
               ) -> tuple[list[tf.Tensor], list[tf.Tensor], list[str]]:
        """Field vectors ``[batch, field_dim]``, first-order terms ``[batch, 1]`` and field names.

        As in the item tower, ``id_dropout`` hides the item-id field for a random share of
        training examples so that the content fields learn to score items on their own.
        """
        feats = self.table(features["item"])
        user = features["user"]
        known = id_keep_mask(feats["id_slot"], self.id_dropout if self.use_content else 0.0, training)
        vecs = [self.user_vec(user), self.item_vec(feats["id_slot"]) * known]
        firsts = [self.user_bias(user), self.item_bias(feats["id_slot"]) * known]
        names = ["user", "item"]
        if self.history_length:
            vecs.append(self.history_field(user, features["item"]))
            firsts.append(tf.zeros_like(firsts[0]))
            names.append("history")
        if self.use_content:
            codes = tf.gather(self.user_codes, tf.cast(user, tf.int32)) if self.user_cat_vec else None
            for i in range(len(self.user_cat_vec)):
                vecs.append(self.user_cat_vec[i](codes[:, i]))
                firsts.append(self.user_cat_bias[i](codes[:, i]))
                names.append(f"user_categorical_{i}")
            if self.num_user_numeric:
                numeric = tf.gather(self.user_numeric, tf.cast(user, tf.int32))
                vecs.append(self.user_numeric_vec(numeric))
                firsts.append(self.user_numeric_bias(numeric))
                names.append("_user_numeric")
            for i in range(len(self.cat_vec)):
                vecs.append(self.cat_vec[i](feats["categorical"][:, i]))
                firsts.append(self.cat_bias[i](feats["categorical"][:, i]))
                names.append(f"categorical_{i}")
            for m in self.dense_names:
                x = feats["numeric"] if m == "_numeric" else feats["content"][m]
                mask = tf.ones_like(known) if m == "_numeric" else feats["masks"][m][:, None]
                vecs.append(self.dense_vec[m](x) * mask)
                firsts.append(self.dense_bias[m](x) * mask)
                names.append(m)
        return vecs, firsts, names

    def call(self, features: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        vecs, firsts, _ = self.fields(features, training=training)
        return self.logit(vecs, firsts, training=training)

    def logit(self, vecs: list[tf.Tensor], firsts: list[tf.Tensor], training: bool | None = None) -> tf.Tensor:
        """The score from the field vectors and first-order terms of :meth:`fields`; separate so that
        an explanation can re-score with one field zeroed (``export.ranking``)."""
        stacked = tf.stack(vecs, axis=1)  # [b, fields, k]
        fm = 0.5 * tf.reduce_sum(tf.square(tf.reduce_sum(stacked, 1)) - tf.reduce_sum(tf.square(stacked), 1),
                                 axis=-1, keepdims=True)
        deep = self.deep(tf.reshape(stacked, [-1, len(vecs) * self.field_dim]), training=training)
        return tf.squeeze(tf.add_n(firsts) + fm + deep, axis=-1) + self.global_bias

    def get_config(self) -> dict[str, Any]:
        return {"table": keras.layers.serialize(self.table), "num_users": self.num_users,
                "num_id_slots": self.num_id_slots, "categorical_cardinalities": list(self.categorical_cardinalities),
                "field_dim": self.field_dim, "hidden_units": list(self.hidden_units), "dropout": self.dropout,
                "use_content": self.use_content, "id_dropout": self.id_dropout,
                "user_feature_cardinalities": list(self.user_feature_cardinalities),
                "num_user_numeric": self.num_user_numeric, "history_length": self.history_length,
                "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DeepFM:
        config = dict(config)
        config["table"] = keras.layers.deserialize(config["table"])
        return cls(**config)
