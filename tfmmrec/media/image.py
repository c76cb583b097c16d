"""Image decoding inside tf.data: bytes -> float32 [size, size, 3] in [0, 1].

[0, 1] RGB at a fixed square size is the input contract of TF-Hub image feature vectors
(Inception v3: 299x299), so the same decoded tensors feed the built-in and the hub encoders.
"""
from __future__ import annotations

import tensorflow as tf


def decode_image(contents: tf.Tensor, size: int) -> tf.Tensor:
    """Decode PNG/JPEG/GIF/BMP bytes, drop alpha, resize (aspect not kept) to ``size``."""
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image = tf.image.convert_image_dtype(image, tf.float32)
    image = tf.image.resize(image, [size, size], antialias=True)
    return tf.clip_by_value(image, 0.0, 1.0)
