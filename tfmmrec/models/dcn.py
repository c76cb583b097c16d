"""DCN-v2 ranking over the same fields as DeepFM.

Wang et al. 2021, "DCN V2: Improved Deep & Cross Network and Practical Lessons for Web-scale
Learning to Rank Systems". The fields (user id, item id, categorical columns, projected modality
embeddings; see :class:`tfmmrec.models.ranking.DeepFM`) are concatenated into ``x0``; cross layers
``x_{l+1} = x0 * (W x_l + b) + x_l`` (``tfrs.layers.dcn.Cross``) build explicit feature crosses
of growing degree, and the deep MLP reads their output (the "stacked" structure). The
first-order terms of DeepFM are kept, so per-user and per-item biases need no crossing.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tensorflow_recommenders as tfrs
import tf_keras as keras

from tfmmrec.models.features import ItemFeatureTable
from tfmmrec.models.ranking import DeepFM


@keras.utils.register_keras_serializable(package="tfmmrec")
class DCN(DeepFM):
    """``{"user": int, "item": int}`` (model indices) -> score ``[batch]`` (a logit, or a rating).

    Args (beyond DeepFM's):
      cross_layers: number of cross layers.
      projection_dim: rank of each cross layer's weight (``W = U V``); 0 = full rank.
    """

    def __init__(self, table: ItemFeatureTable, num_users: int, num_id_slots: int,
                 categorical_cardinalities: tuple[int, ...] = (), field_dim: int = 16,
                 hidden_units: tuple[int, ...] = (64, 32), dropout: float = 0.1, use_content: bool = True,
                 id_dropout: float = 0.0, cross_layers: int = 2, projection_dim: int = 0, **kwargs: Any) -> None:
        super().__init__(table, num_users, num_id_slots, categorical_cardinalities, field_dim, hidden_units,
                         dropout, use_content, id_dropout, **kwargs)  # user feature kwargs pass through
        self.cross_layers, self.projection_dim = cross_layers, projection_dim
        self.cross = [tfrs.layers.dcn.Cross(projection_dim=projection_dim or None, name=f"cross_{i}")
                      for i in range(cross_layers)]

    def logit(self, vecs: list[tf.Tensor], firsts: list[tf.Tensor], training: bool | None = None) -> tf.Tensor:
        x0 = tf.concat(vecs, axis=-1)
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        return tf.squeeze(tf.add_n(firsts) + self.deep(x, training=training), axis=-1) + self.global_bias

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cross_layers": self.cross_layers, "projection_dim": self.projection_dim}
