"""Low-rank bilinear interaction: what two modalities say together, not just side by side."""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from tfmmrec.fusion.base import FusionLayer


@keras.utils.register_keras_serializable(package="tfmmrec")
class BilinearFusion(FusionLayer):
    """Pairwise low-rank bilinear pooling (MLB, Kim et al., 2017, arXiv:1610.04325) over all pairs.

    Each modality is projected to rank ``r = projection_dim`` (``p_m = P_m x_m``); a full bilinear
    form ``x_i^T W x_j`` is approximated by the Hadamard product ``p_i * p_j``. The sum over all
    pairs ``i < j`` is computed as in factorisation machines, ``((sum p)^2 - sum p^2) / 2``, so the
    cost is linear in the number of modalities. The head sees ``[sum_m p_m, pairwise, presence]``.
    A pair with an absent member contributes nothing (its ``p`` is zero).
    """

    def fuse(self, tokens: tf.Tensor, mask: tf.Tensor, training: bool | None,
             query: tf.Tensor | None) -> tuple[tf.Tensor, None]:
        total = tf.reduce_sum(tokens, axis=1)
        pairwise = 0.5 * (tf.square(total) - tf.reduce_sum(tf.square(tokens), axis=1))
        return tf.concat([total, pairwise], axis=-1), None
