"""The two towers of a retrieval model, on model indices (see ``models.features``)."""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmmrec.fusion import FUSIONS, make_fusion, randomness
from tfmmrec.models.features import ItemFeatureTable, id_keep_mask

HISTORY_POOLINGS = ("mean", "attention", "mean+attention")


@keras.utils.register_keras_serializable(package="tfmmrec")
class QueryTower(keras.Model):
    """User -> L2-normalised embedding = user id embedding + user feature embeddings + pooled history.

    Index 0 (a user unknown at training time) has an id row like any other: with
    ``user_id_dropout`` > 0 training routes a share of examples to it, so it learns the generic
    user, and the rest of the query (features, history) makes it personal. ``embedding_dropout``
    drops elements of the user's id embedding in training (a regulariser for ids that memorise
    their few training items).

    The history part pools the item embeddings of the user's recent items (``history_encoder``,
    normally the item tower itself, so history and candidates live in one space): a user with a
    few interactions and no trained id row is still "near what they consumed". Pooling is a masked
    mean, an attention-weighted sum (a small MLP scores each history item), or both summed.

    Call with a user index tensor ``[batch]`` (features and history are then looked up in the
    tower's own tables, filled by :meth:`set_user_tables` from the training data; that is what an
    export serves), or with a dict ``{"user", "history"?, "user_features"?}`` to supply them
    explicitly, e.g. for a user who is not in the tables (``history``: item indices ``[batch, L]``,
    0 = padding; ``user_features``: codes ``[batch, fields]``, 0 = unknown).
    """

    def __init__(self, num_users: int, embedding_dim: int, *,
                 user_feature_cardinalities: tuple[int, ...] = (), history_length: int = 0,
                 history_pooling: str = "mean", history_encoder: keras.layers.Layer | None = None,
                 user_id_dropout: float = 0.0, embedding_dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if history_length and history_encoder is None:
            raise ValueError("history_length > 0 needs a history_encoder (the item tower)")
        if history_pooling not in HISTORY_POOLINGS:
            raise ValueError(f"history_pooling must be one of {HISTORY_POOLINGS}, got {history_pooling!r}")
        self.num_users, self.embedding_dim = num_users, embedding_dim
        self.user_feature_cardinalities = tuple(user_feature_cardinalities)
        self.history_length, self.history_pooling = history_length, history_pooling
        self.history_encoder, self.user_id_dropout = history_encoder, user_id_dropout
        self.user_embedding = keras.layers.Embedding(num_users + 1, embedding_dim, name="user_embedding")
        self.embedding_dropout = embedding_dropout
        if embedding_dropout:  # only then: a tower without it keeps its layers (and checkpoints)
            self.id_dropout_layer = randomness.Dropout(embedding_dropout, name="user_embedding_dropout")
        zeros = keras.initializers.Zeros()
        self.feature_embeddings = [keras.layers.Embedding(c, embedding_dim, name=f"user_feature_{i}")
                                   for i, c in enumerate(self.user_feature_cardinalities)]
        if self.user_feature_cardinalities:
            self.user_codes = self.add_weight(name="user_codes", shape=(num_users + 1, len(self.feature_embeddings)),
                                              dtype=tf.int32, initializer=zeros, trainable=False)
        if history_length:
            self.user_history = self.add_weight(name="user_history", shape=(num_users + 1, history_length),
                                                dtype=tf.int32, initializer=zeros, trainable=False)
            if "attention" in history_pooling:
                self.attention_score = keras.Sequential(
                    [keras.layers.Dense(embedding_dim, activation="tanh"), keras.layers.Dense(1)],
                    name="history_attention")

    def set_user_tables(self, user_codes: np.ndarray | None = None, history: np.ndarray | None = None) -> None:
        """Store each user index's feature codes ``[U + 1, fields]`` and recent items ``[U + 1, L]``."""
        if user_codes is not None:
            self.user_codes.assign(user_codes.astype(np.int32))
        if history is not None:
            self.user_history.assign(history.astype(np.int32))

    def pool_history(self, history: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """``[batch, L]`` item indices (0 = padding) -> ``[batch, d]``; zeros for an empty history."""
        history = tf.cast(history, tf.int32)
        unique, position = tf.unique(tf.reshape(history, [-1]))  # each distinct item through the tower once
        item_emb = tf.gather(self.history_encoder(unique, training=training), position)
        item_emb = tf.reshape(item_emb, [tf.shape(history)[0], tf.shape(history)[1], self.embedding_dim])
        mask = tf.cast(history > 0, tf.float32)
        out = tf.zeros([tf.shape(history)[0], self.embedding_dim])
        if "mean" in self.history_pooling:
            out += tf.reduce_sum(item_emb * mask[..., None], 1) / tf.maximum(tf.reduce_sum(mask, 1, keepdims=True), 1.0)
        if "attention" in self.history_pooling:
            logits = tf.squeeze(self.attention_score(item_emb), -1)
            weights = tf.nn.softmax(tf.where(mask > 0, logits, -1e9), axis=-1) * mask
            out += tf.reduce_sum(item_emb * weights[..., None], 1)
        return out

    def call(self, inputs: tf.Tensor | dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        given = inputs if isinstance(inputs, dict) else {"user": inputs}
        user = tf.cast(given["user"], tf.int32)
        id_user = user
        if training and self.user_id_dropout > 0:
            id_user = tf.where(randomness.uniform(tf.shape(user)) < self.user_id_dropout, tf.zeros_like(user), user)
        out = self.user_embedding(id_user)
        if self.embedding_dropout:
            out = self.id_dropout_layer(out, training=training)
        if self.feature_embeddings:
            codes = given.get("user_features")
            codes = tf.gather(self.user_codes, user) if codes is None else tf.cast(codes, tf.int32)
            for i, layer in enumerate(self.feature_embeddings):
                out += layer(codes[:, i])
        if self.history_length:
            history = given.get("history")
            out += self.pool_history(tf.gather(self.user_history, user) if history is None else history, training)
        return tf.math.l2_normalize(out, axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = {"num_users": self.num_users, "embedding_dim": self.embedding_dim, "name": self.name}
        if self.embedding_dropout:
            config["embedding_dropout"] = self.embedding_dropout
        if self.user_feature_cardinalities or self.history_length or self.user_id_dropout:
            config.update(user_feature_cardinalities=list(self.user_feature_cardinalities),
                          history_length=self.history_length, history_pooling=self.history_pooling,
                          user_id_dropout=self.user_id_dropout,
                          history_encoder=keras.layers.serialize(self.history_encoder) if self.history_encoder
                          else None)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> QueryTower:
        config = dict(config)
        if config.get("history_encoder") is not None:
            config["history_encoder"] = keras.layers.deserialize(config["history_encoder"])
        return cls(**config)


@keras.utils.register_keras_serializable(package="tfmmrec")
class ItemTower(keras.Model):
    """Item index -> L2-normalised embedding = id embedding + content embedding.

    The id part memorises what content cannot say about a popular item; the content part
    (fused modalities, categorical and numeric fields) generalises to items with few or no
    interactions. ``id_dropout`` hides the id part for a random share of training examples,
    which forces the content part to carry the item on its own, as it must for cold items.
    An item without a trained id row (slot 0: unseen in training, or the unknown index 0) is its
    content alone. With ``use_content=False`` this is the plain ID-only tower used as a baseline.
    ``embedding_dropout`` drops elements of the id embedding in training (a regulariser: ids of
    items with few interactions otherwise memorise them within a few epochs).

    ``content_delta`` (dict modality -> ``[batch, dim]``) is added to the content embeddings; the
    adversarial training step uses it to perturb content (see ``models.retrieval``).

    ``content_switch``: the content part is multiplied by a non-trainable ``content_on`` weight
    (1 or 0, :meth:`set_content`; saved with the weights and, as its initial value, the config), so one tower, with one set of layers, serves as ids + content or
    as ids only; the warm/cold model's ``warm_tower: select`` trains both and keeps the better on
    validation (``tfmmrec.train.coldstart``) without changing what it exports.
    """

    def __init__(self, table: ItemFeatureTable, num_id_slots: int, embedding_dim: int,
                 categorical_cardinalities: tuple[int, ...] = (), use_content: bool = True,
                 fusion_hidden: tuple[int, ...] = (128,), fusion_dropout: float = 0.0, id_dropout: float = 0.2,
                 modality_dropout: float = 0.1, fusion: str = "concat", fusion_balance_weight: float = 0.0,
                 fusion_options: dict[str, Any] | None = None, embedding_dropout: float = 0.0,
                 content_switch: bool = False, content_on: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if content_switch and not use_content:
            raise ValueError("content_switch needs use_content=True: it switches the content part on or off")
        if getattr(FUSIONS.get(fusion), "needs_query", False):
            raise ValueError(f"fusion {fusion!r} needs the user as query: an item tower's embedding must not depend "
                             "on the user (use it in ranking / re-scoring)")
        self.fusion_kind, self.fusion_balance_weight = fusion, fusion_balance_weight
        self.fusion_options = dict(fusion_options or {})
        self.table = table
        self.num_id_slots, self.embedding_dim = num_id_slots, embedding_dim
        self.categorical_cardinalities = tuple(categorical_cardinalities)
        self.use_content, self.fusion_hidden, self.fusion_dropout = use_content, tuple(fusion_hidden), fusion_dropout
        self.id_dropout, self.modality_dropout = id_dropout, modality_dropout
        self.id_embedding = keras.layers.Embedding(num_id_slots, embedding_dim, name="item_id_embedding")
        self.embedding_dropout = embedding_dropout
        if embedding_dropout:  # only then: a tower without it keeps its layers (and checkpoints)
            self.id_dropout_layer = randomness.Dropout(embedding_dropout, name="item_embedding_dropout")
        if use_content:
            extra = {"balance_weight": fusion_balance_weight} if fusion_balance_weight else {}
            self.fusion = make_fusion(fusion, embedding_dim, hidden_units=fusion_hidden, dropout=fusion_dropout,
                                      modality_dropout=modality_dropout, **{**extra, **self.fusion_options})
            self.categorical_embeddings = [keras.layers.Embedding(c, embedding_dim, name=f"categorical_{i}")
                                           for i, c in enumerate(self.categorical_cardinalities)]
        self.content_switch = content_switch
        if content_switch:  # only then: a tower without it keeps its weights (and checkpoints)
            self.content_on = self.add_weight(name="content_on", shape=(), trainable=False,
                                              initializer=keras.initializers.Constant(float(content_on)))

    def set_content(self, on: bool) -> None:
        """Switch the content part on (ids + content) or off (ids only); needs ``content_switch``."""
        if not self.content_switch:
            raise TypeError(f"{self.name} has no content switch (build it with content_switch=True)")
        self.content_on.assign(1.0 if on else 0.0)

    def fused_content(self, item: tf.Tensor, training: bool | None = None) -> tf.Tensor | None:
        """The fused modalities (+ numeric fields) of items, ``[batch, d]``, without id or categorical
        fields; ``None`` when the items have neither (the multitask category head reads this)."""
        embeddings, masks = self.fusion_inputs(self.table(item))
        return self.fusion(embeddings, masks, training=training) if embeddings else None

    def call(self, item: tf.Tensor, training: bool | None = None,
             content_delta: dict[str, tf.Tensor] | None = None) -> tf.Tensor:
        feats = self.table(item)
        keep = id_keep_mask(feats["id_slot"], self.id_dropout if self.use_content else 0.0, training)
        out = self.id_embedding(feats["id_slot"]) * keep
        if self.embedding_dropout:
            out = self.id_dropout_layer(out, training=training)
        if self.content_switch:
            out += self.content_on * self.content_embedding(feats, training=training, content_delta=content_delta)
        elif self.use_content:
            out = self.content_embedding(feats, training=training, content_delta=content_delta, onto=out)
        return tf.math.l2_normalize(out, axis=-1)

    def content_embedding(self, feats: dict[str, Any], training: bool | None = None,
                          content_delta: dict[str, tf.Tensor] | None = None, onto: tf.Tensor | None = None
                          ) -> tf.Tensor:
        """The content part of the item embedding, ``[batch, d]`` before normalisation: the fused
        modalities and numeric fields plus the categorical field embeddings. An item without a
        trained id is exactly this, L2-normalised.

        The one content path: training (``call``), and the export's raw-content signature, which
        builds ``feats`` from raw files with the training statistics (``tfmmrec.export.content``).
        ``feats`` as ``ItemFeatureTable`` returns them: ``content`` and ``masks`` per modality,
        ``numeric`` ``[batch, fields]`` (z-scored), ``categorical`` codes ``[batch, fields]``.
        ``onto``: a tensor the parts are added to one by one (``call`` passes the id part), so the
        float sums run in one order wherever the path is used.
        """
        embeddings, masks = self.fusion_inputs(feats)
        for m, delta in (content_delta or {}).items():
            embeddings[m] = embeddings[m] + delta
        out = onto if onto is not None else tf.zeros([tf.shape(feats["categorical"])[0], self.embedding_dim])
        if embeddings:
            out += self.fusion(embeddings, masks, training=training)
        for i, layer in enumerate(self.categorical_embeddings):
            out += layer(feats["categorical"][:, i])
        return out

    def fusion_inputs(self, feats: dict[str, Any]) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """The fusion's inputs: each modality and, as one more always-present modality, the numeric fields."""
        embeddings, masks = dict(feats["content"]), dict(feats["masks"])
        if self.table.num_numeric:
            embeddings["_numeric"] = feats["numeric"]
            masks["_numeric"] = tf.ones_like(feats["numeric"][:, 0])
        return embeddings, masks

    def modality_weights(self, item: tf.Tensor) -> dict[str, tf.Tensor]:
        """``{modality: [batch]}``: how much the item tower's fusion leans on each modality for these
        items (weighing fusions only, see ``tfmmrec.fusion``); log it, or use it to explain a result."""
        if not self.use_content or not getattr(self.fusion, "weighs_modalities", False):
            raise TypeError(f"fusion {self.fusion_kind!r} of {self.name} does not weigh modalities")
        return self.fusion.modality_weights(*self.fusion_inputs(self.table(item)))

    def get_config(self) -> dict[str, Any]:
        return {"table": keras.layers.serialize(self.table), "num_id_slots": self.num_id_slots,
                "embedding_dim": self.embedding_dim,
                "categorical_cardinalities": list(self.categorical_cardinalities),
                "use_content": self.use_content, "fusion_hidden": list(self.fusion_hidden),
                "fusion_dropout": self.fusion_dropout,
                "id_dropout": self.id_dropout, "modality_dropout": self.modality_dropout,
                "fusion": self.fusion_kind, "fusion_balance_weight": self.fusion_balance_weight,
                "fusion_options": dict(self.fusion_options), "embedding_dropout": self.embedding_dropout,
                "content_switch": self.content_switch,
                **({"content_on": bool(self.content_on.numpy())} if self.content_switch else {}), "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ItemTower:
        config = dict(config)
        config["table"] = keras.layers.deserialize(config["table"])
        return cls(**config)
