"""The two towers of a retrieval model, on model indices (see ``models.features``)."""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

from tfmmrec.fusion import FUSIONS, make_fusion
from tfmmrec.models.features import ItemFeatureTable, id_keep_mask


@keras.utils.register_keras_serializable(package="tfmmrec")
class QueryTower(keras.Model):
    """User index -> L2-normalised embedding. Index 0 (unknown user) is a learned fallback row."""

    def __init__(self, num_users: int, embedding_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_users, self.embedding_dim = num_users, embedding_dim
        self.user_embedding = keras.layers.Embedding(num_users + 1, embedding_dim, name="user_embedding")

    def call(self, user: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return tf.math.l2_normalize(self.user_embedding(user), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {"num_users": self.num_users, "embedding_dim": self.embedding_dim, "name": self.name}


@keras.utils.register_keras_serializable(package="tfmmrec")
class ItemTower(keras.Model):
    """Item index -> L2-normalised embedding = id embedding + content embedding.

    The id part memorises what content cannot say about a popular item; the content part
    (fused modalities, categorical and numeric fields) generalises to items with few or no
    interactions. ``id_dropout`` hides the id part for a random share of training examples,
    which forces the content part to carry the item on its own, as it must for cold items.
    With ``use_content=False`` this is the plain ID-only tower used as a baseline.
    """

    def __init__(self, table: ItemFeatureTable, num_id_slots: int, embedding_dim: int,
                 categorical_cardinalities: tuple[int, ...] = (), use_content: bool = True,
                 fusion_hidden: tuple[int, ...] = (128,), fusion_dropout: float = 0.0, id_dropout: float = 0.2,
                 modality_dropout: float = 0.1, fusion: str = "concat", fusion_balance_weight: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if getattr(FUSIONS.get(fusion), "needs_query", False):
            raise ValueError(f"fusion {fusion!r} needs the user as query: an item tower's embedding must not depend "
                             "on the user (use it in ranking / re-scoring)")
        self.fusion_kind, self.fusion_balance_weight = fusion, fusion_balance_weight
        self.table = table
        self.num_id_slots, self.embedding_dim = num_id_slots, embedding_dim
        self.categorical_cardinalities = tuple(categorical_cardinalities)
        self.use_content, self.fusion_hidden, self.fusion_dropout = use_content, tuple(fusion_hidden), fusion_dropout
        self.id_dropout, self.modality_dropout = id_dropout, modality_dropout
        self.id_embedding = keras.layers.Embedding(num_id_slots, embedding_dim, name="item_id_embedding")
        if use_content:
            extra = {"balance_weight": fusion_balance_weight} if fusion_balance_weight else {}
            self.fusion = make_fusion(fusion, embedding_dim, hidden_units=fusion_hidden, dropout=fusion_dropout,
                                      modality_dropout=modality_dropout, **extra)
            self.categorical_embeddings = [keras.layers.Embedding(c, embedding_dim, name=f"categorical_{i}")
                                           for i, c in enumerate(self.categorical_cardinalities)]

    def call(self, item: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        feats = self.table(item)
        keep = id_keep_mask(feats["id_slot"], self.id_dropout if self.use_content else 0.0, training)
        out = self.id_embedding(feats["id_slot"]) * keep
        if self.use_content:
            embeddings, masks = self._fusion_inputs(feats, keep)
            if embeddings:
                out += self.fusion(embeddings, masks, training=training)
            for i, layer in enumerate(self.categorical_embeddings):
                out += layer(feats["categorical"][:, i])
        return tf.math.l2_normalize(out, axis=-1)

    def _fusion_inputs(self, feats: dict[str, Any], keep: tf.Tensor
                       ) -> tuple[dict[str, tf.Tensor], dict[str, tf.Tensor]]:
        """The fusion's inputs: each modality and, as one more always-present modality, the numeric
        fields. ``keep`` (float ``[batch, 1]``) only lends its shape to the numeric mask, with the same
        ops as the first release, so that the graph's random seeds, hence the default numbers, stay put."""
        embeddings, masks = dict(feats["content"]), dict(feats["masks"])
        if self.table.num_numeric:
            embeddings["_numeric"] = feats["numeric"]
            masks["_numeric"] = tf.ones_like(keep[:, 0])
        return embeddings, masks

    def modality_weights(self, item: tf.Tensor) -> dict[str, tf.Tensor]:
        """``{modality: [batch]}``: how much the item tower's fusion leans on each modality for these
        items (weighing fusions only, see ``tfmmrec.fusion``); log it, or use it to explain a result."""
        if not self.use_content or not getattr(self.fusion, "weighs_modalities", False):
            raise TypeError(f"fusion {self.fusion_kind!r} of {self.name} does not weigh modalities")
        feats = self.table(item)
        return self.fusion.modality_weights(*self._fusion_inputs(feats, id_keep_mask(feats["id_slot"], 0.0, False)))

    def get_config(self) -> dict[str, Any]:
        return {"table": keras.layers.serialize(self.table), "num_id_slots": self.num_id_slots,
                "embedding_dim": self.embedding_dim,
                "categorical_cardinalities": list(self.categorical_cardinalities),
                "use_content": self.use_content, "fusion_hidden": list(self.fusion_hidden),
                "fusion_dropout": self.fusion_dropout,
                "id_dropout": self.id_dropout, "modality_dropout": self.modality_dropout,
                "fusion": self.fusion_kind, "fusion_balance_weight": self.fusion_balance_weight, "name": self.name}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ItemTower:
        config = dict(config)
        config["table"] = keras.layers.deserialize(config["table"])
        return cls(**config)
