"""Attention over modalities: per-item modality weights (additive attention) and attention pooling."""
from __future__ import annotations

from typing import Any, ClassVar

import tensorflow as tf
import tf_keras as keras

from tfmmrec.fusion.base import FusionLayer, masked_softmax, zero_absent


@keras.utils.register_keras_serializable(package="tfmmrec")
class ModalityAttentionFusion(FusionLayer):
    """Per-item modality weights from additive attention (Bahdanau et al., 2015).

    ``score_m = v . tanh(W p_m + e_m)`` with a learned modality-type vector ``e_m``; weights are the
    softmax of the scores over the item's present modalities; ``fused = sum_m w_m p_m``. Each score
    looks at its own modality only: an item whose text is informative leans on its text.
    """

    weighs_modalities: ClassVar[bool] = True

    def __init__(self, output_dim: int, *, attention_units: int = 32, **kwargs: Any) -> None:
        super().__init__(output_dim, **kwargs)
        self.attention_units = attention_units

    def build_fusion(self, num_modalities: int) -> None:
        self.key = keras.layers.Dense(self.attention_units, use_bias=False, name="key")
        self.type_embedding = self.add_weight(name="modality_type", shape=(num_modalities, self.attention_units),
                                              initializer="zeros")
        self.score = keras.layers.Dense(1, use_bias=False, name="score")

    def fuse(self, tokens: tf.Tensor, mask: tf.Tensor, training: bool | None,
             query: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
        logits = self.score(tf.tanh(self.key(tokens) + self.type_embedding))[:, :, 0]
        weights = masked_softmax(logits, mask)
        return tf.reduce_sum(weights[:, :, None] * tokens, axis=1), weights

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "attention_units": self.attention_units}


class _Heads(keras.layers.Layer):
    """Linear map to ``heads x head_dim``, reshaped to ``[..., heads, head_dim]``."""

    def __init__(self, heads: int, head_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heads, self.head_dim = heads, head_dim
        self.dense = keras.layers.Dense(heads * head_dim)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        y = self.dense(x)
        return tf.reshape(y, tf.concat([tf.shape(y)[:-1], [self.heads, self.head_dim]], 0))


def multi_head_pool(query: tf.Tensor, keys: tf.Tensor, values: tf.Tensor, mask: tf.Tensor
                    ) -> tuple[tf.Tensor, tf.Tensor]:
    """Masked multi-head attention of one query per item over its modality tokens.

    Args:
      query: ``[b or 1, heads, k]``; keys, values: ``[b, M, heads, k]``; mask: ``[b, M]``.
    Returns:
      pooled ``[b, heads * k]`` and weights ``[b, M]`` (averaged over heads, sum 1 over present).
    """
    scale = tf.math.rsqrt(tf.cast(tf.shape(keys)[-1], tf.float32))
    logits = tf.einsum("bhk,bmhk->bhm", tf.broadcast_to(query, tf.shape(keys[:, 0])), keys) * scale
    attn = masked_softmax(logits, mask[:, None, :])  # [b, heads, M]
    pooled = tf.einsum("bhm,bmhk->bhk", attn, values)
    return tf.reshape(pooled, [-1, values.shape[2] * values.shape[3]]), tf.reduce_mean(attn, axis=1)


@keras.utils.register_keras_serializable(package="tfmmrec")
class AttentionPoolingFusion(FusionLayer):
    """Set-style attention pooling (Lee et al., Set Transformer, 2019, arXiv:1810.00825).

    The modality tokens (plus modality-type vectors) first attend to each other (one masked
    multi-head self-attention block with a residual connection, absent tokens stay zero and are
    never attended to), then a learned seed query pools them with multi-head attention. Where
    ``ModalityAttentionFusion`` scores each modality alone, here each token is contextualised by the
    others before the pooling weights are computed. Weights = pooling attention averaged over heads.
    """

    weighs_modalities: ClassVar[bool] = True

    def __init__(self, output_dim: int, *, num_heads: int = 2, head_dim: int = 16, self_attention: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(output_dim, **kwargs)
        self.num_heads, self.head_dim, self.self_attention = num_heads, head_dim, self_attention

    def build_fusion(self, num_modalities: int) -> None:
        h, k, d = self.num_heads, self.head_dim, self.projection_dim
        self.type_embedding = self.add_weight(name="modality_type", shape=(num_modalities, d), initializer="zeros")
        if self.self_attention:
            self.sa_query, self.sa_key, self.sa_value = (_Heads(h, k, name=n)
                                                         for n in ("sa_query", "sa_key", "sa_value"))
            self.sa_out = keras.layers.Dense(d, name="sa_out")
            self.norm = keras.layers.LayerNormalization(name="norm")
        self.seed = self.add_weight(name="seed_query", shape=(1, h, k), initializer="random_normal")
        self.pool_key, self.pool_value = _Heads(h, k, name="pool_key"), _Heads(h, k, name="pool_value")

    def fuse(self, tokens: tf.Tensor, mask: tf.Tensor, training: bool | None,
             query: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
        x = tokens + self.type_embedding
        if self.self_attention:
            scale = tf.math.rsqrt(tf.cast(self.head_dim, tf.float32))
            q, k, v = self.sa_query(x), self.sa_key(x), self.sa_value(x)
            attn = masked_softmax(tf.einsum("bqhk,bmhk->bhqm", q, k) * scale, mask[:, None, None, :])
            mixed = tf.reshape(tf.einsum("bhqm,bmhk->bqhk", attn, v),
                               [-1, len(self.names), self.num_heads * self.head_dim])
            x = self.norm(x + self.sa_out(mixed))
        x = tf.stack([zero_absent(x[:, i], mask[:, i]) for i in range(len(self.names))], axis=1)
        return multi_head_pool(self.seed, self.pool_key(x), self.pool_value(x), mask)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_heads": self.num_heads, "head_dim": self.head_dim,
                "self_attention": self.self_attention}
