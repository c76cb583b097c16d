"""Gated fusion: a gate computed from all modalities decides, per dimension, whom to listen to."""
from __future__ import annotations

from typing import ClassVar

import tensorflow as tf
import tf_keras as keras

from tfmmrec.fusion.base import FusionLayer, masked_softmax


@keras.utils.register_keras_serializable(package="tfmmrec")
class GatedFusion(FusionLayer):
    """Gated Multimodal Unit (Arevalo et al., 2017, arXiv:1702.01992), generalised to M modalities.

    ``h_m = tanh(P_m x_m)``; gates ``z = softmax_m(W [x_1..x_M, presence])`` per output dimension,
    over the present modalities; ``fused = sum_m z_m * h_m``. Unlike modality attention, the gate of
    one modality sees the others (an image can overrule a vague text), and it acts per dimension.
    ``modality_weights`` reports each modality's gate averaged over dimensions (sums to 1).
    """

    weighs_modalities: ClassVar[bool] = True

    def build_fusion(self, num_modalities: int) -> None:
        self.num_modalities = num_modalities
        self.gate = keras.layers.Dense(num_modalities * self.projection_dim, name="gate")

    def fuse(self, tokens: tf.Tensor, mask: tf.Tensor, training: bool | None,
             query: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor]:
        flat = tf.reshape(tokens, [-1, self.num_modalities * self.projection_dim])
        logits = tf.reshape(self.gate(tf.concat([flat, mask], axis=-1)),
                            [-1, self.num_modalities, self.projection_dim])
        gates = masked_softmax(logits, mask[:, :, None], axis=1)  # [b, M, d], sums to 1 over present m
        return tf.reduce_sum(gates * tf.tanh(tokens), axis=1), tf.reduce_mean(gates, axis=2)
