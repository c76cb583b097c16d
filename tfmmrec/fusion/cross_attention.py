"""Query-conditioned cross-attention: the user decides which of the item's modalities matter."""
from __future__ import annotations

from typing import Any, ClassVar

import tensorflow as tf
import tf_keras as keras

from tfmmrec.fusion.attention import _Heads, multi_head_pool
from tfmmrec.fusion.base import FusionLayer


@keras.utils.register_keras_serializable(package="tfmmrec")
class QueryCrossAttentionFusion(FusionLayer):
    """Multi-head attention of a query (the user side) over the item's modality tokens.

    Call: ``layer(embeddings, masks, query=user_vector, training=...)``, ``query`` float
    ``[batch, query_dim]``; the attended tokens go through the head to ``output_dim``. Weights
    (``modality_weights(embeddings, masks, query)``) say, per (user, item) pair, which modality
    the user's representation attended to: one user may follow images, another descriptions.

    Not for the item tower of a two-tower model: the item embedding would depend on the user, so
    it could no longer be precomputed and indexed for retrieval. Use it where a (user, item) pair is
    scored together: ranking (DeepFM/DCN heads) or re-scoring a retrieved shortlist.
    """

    weighs_modalities: ClassVar[bool] = True
    needs_query: ClassVar[bool] = True

    def __init__(self, output_dim: int, *, num_heads: int = 2, head_dim: int = 16, **kwargs: Any) -> None:
        super().__init__(output_dim, **kwargs)
        self.num_heads, self.head_dim = num_heads, head_dim
        self.query_heads = _Heads(num_heads, head_dim, name="query")

    def build_fusion(self, num_modalities: int) -> None:
        self.type_embedding = self.add_weight(name="modality_type", shape=(num_modalities, self.projection_dim),
                                              initializer="zeros")
        self.key, self.value = _Heads(self.num_heads, self.head_dim, name="key"), _Heads(
            self.num_heads, self.head_dim, name="value")

    def fuse(self, tokens: tf.Tensor, mask: tf.Tensor, training: bool | None,
             query: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
        x = tokens + self.type_embedding
        return multi_head_pool(self.query_heads(tf.cast(query, tf.float32)), self.key(x), self.value(x), mask)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_heads": self.num_heads, "head_dim": self.head_dim}
