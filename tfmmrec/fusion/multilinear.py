"""Multilinear (tensor) fusion in low rank, as in LMF."""
from __future__ import annotations

from typing import Any

import tensorflow as tf
import tf_keras as keras

from tfmmrec.fusion.base import FusionLayer


@keras.utils.register_keras_serializable(package="tfmmrec")
class MultilinearFusion(FusionLayer):
    """Low-rank Multimodal Fusion (Liu et al., ACL 2018, arXiv:1806.00064).

    Tensor fusion takes the outer product of ``[x_m; 1]`` over all modalities (every
    uni-, bi- and tri-modal interaction) and maps it linearly; LMF does the same with a rank-``R``
    factorisation of that map: ``fused = sum_r lambda_r * prod_m (W_m^(r) [p_m; 1])``. The appended
    1 is the bias of each factor. An absent modality's factor is the multiplicative identity (all
    ones), so it contributes nothing, and the product reduces to the present modalities.
    """

    def __init__(self, output_dim: int, *, rank: int = 4, **kwargs: Any) -> None:
        super().__init__(output_dim, **kwargs)
        self.rank = rank

    def build_fusion(self, num_modalities: int) -> None:
        self.factors = [keras.layers.Dense(self.rank * self.projection_dim, name=f"factor_{n}",
                                           kernel_initializer=keras.initializers.RandomNormal(stddev=0.05),
                                           bias_initializer="ones") for n in self.names]
        self.rank_weights = self.add_weight(name="rank_weights", shape=(self.rank,),
                                            initializer=keras.initializers.Constant(1.0 / self.rank))

    def fuse(self, tokens: tf.Tensor, mask: tf.Tensor, training: bool | None,
             query: tf.Tensor | None) -> tuple[tf.Tensor, None]:
        product = None
        for i, factor in enumerate(self.factors):
            f = tf.reshape(factor(tokens[:, i]), [-1, self.rank, self.projection_dim])
            f = tf.where(mask[:, i, None, None] > 0, f, tf.ones_like(f))
            product = f if product is None else product * f
        return tf.einsum("r,brd->bd", self.rank_weights, product), None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rank": self.rank}
