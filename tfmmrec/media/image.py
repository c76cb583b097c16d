"""Image decoding inside tf.data: bytes -> float32 [size, size, 3] in [0, 1].

[0, 1] RGB at a fixed square size is the input contract of TF-Hub image feature vectors
(Inception v3: 299x299), so the same decoded tensors feed the built-in and the hub encoders.

Decoding allocates width x height x channels bytes whatever the file size (a 400 KB PNG can
declare 12000 x 12000 pixels), so with ``max_pixels`` the pixel count is read from the header
with TF ops first and an image over it fails before any decoder runs; the same check runs in
tf.data (training, encoding) and in the exported ``embed_item_content`` signature.
"""
from __future__ import annotations

import tensorflow as tf

_HEADER = 32


def _header_bytes(contents: tf.Tensor) -> tf.Tensor:
    """The first 32 bytes as int64 values, zero-padded (short or empty input is not an error)."""
    head = tf.strings.substr(contents, 0, _HEADER)
    padded = tf.strings.join([head, tf.constant(b"\0" * _HEADER)])
    raw = tf.io.decode_raw(tf.strings.substr(padded, 0, _HEADER), tf.uint8)
    return tf.cast(tf.reshape(raw, [_HEADER]), tf.int64)


def _uint(b: tf.Tensor, offset: int, n: int, big_endian: bool) -> tf.Tensor:
    order = range(n) if big_endian else reversed(range(n))
    value = tf.constant(0, tf.int64)
    for i in order:
        value = value * 256 + b[offset + i]
    return value


def _gif_frames_estimate(contents: tf.Tensor) -> tf.Tensor:
    """Frames of a GIF, counted by their graphic control extensions (at least 1): TF decodes every
    frame of an animation, so its cost is frames x screen. An estimate (a frame may lack the
    extension); the catalog stage counts image descriptors exactly (``media.headers.gif_frames``)."""
    pieces = tf.strings.split(tf.reshape(contents, [1]), sep=b"\x21\xf9\x04")
    return tf.maximum(tf.cast(pieces.row_lengths()[0], tf.int64) - 1, 1)


def image_pixels(contents: tf.Tensor) -> tf.Tensor:
    """Width x height declared by a PNG (IHDR), GIF (screen x frames), BMP or JPEG (SOF marker)
    header, as int64; -1 for other bytes (which ``tf.io.decode_image`` rejects anyway)."""
    b = _header_bytes(contents)
    png = tf.reduce_all(tf.equal(b[:4], [0x89, 0x50, 0x4E, 0x47]))
    jpeg = tf.reduce_all(tf.equal(b[:3], [0xFF, 0xD8, 0xFF]))
    gif = tf.reduce_all(tf.equal(b[:4], [0x47, 0x49, 0x46, 0x38]))
    bmp = tf.reduce_all(tf.equal(b[:2], [0x42, 0x4D]))

    def signed32(v: tf.Tensor) -> tf.Tensor:
        return tf.abs(tf.where(v >= 2**31, v - 2**32, v))

    def jpeg_pixels() -> tf.Tensor:
        shape = tf.cast(tf.image.extract_jpeg_shape(contents), tf.int64)
        return shape[0] * shape[1]

    return tf.case([
        (png, lambda: _uint(b, 16, 4, True) * _uint(b, 20, 4, True)),
        (gif, lambda: _uint(b, 6, 2, False) * _uint(b, 8, 2, False) * _gif_frames_estimate(contents)),
        (bmp, lambda: signed32(_uint(b, 18, 4, False)) * signed32(_uint(b, 22, 4, False))),
        (jpeg, jpeg_pixels),
    ], default=lambda: tf.constant(-1, tf.int64), exclusive=False)


def check_pixels(contents: tf.Tensor, max_pixels: int, name: str = "image") -> tf.Tensor:
    """``contents``, after asserting its header declares at most ``max_pixels`` pixels."""
    pixels = image_pixels(contents)
    check = tf.debugging.Assert(pixels <= max_pixels, [
        f"{name}: image over limits.max_image_pixels ({max_pixels}); its header declares", pixels, "pixels"])
    with tf.control_dependencies([check]):
        return tf.identity(contents)


def decode_image(contents: tf.Tensor, size: int, max_pixels: int | None = None, name: str = "image") -> tf.Tensor:
    """Decode PNG/JPEG/GIF/BMP bytes, drop alpha, resize (aspect not kept) to ``size``.

    ``max_pixels``: refuse (InvalidArgumentError naming ``name``) an image whose header declares
    more pixels, before decoding it.
    """
    if max_pixels is not None:
        contents = check_pixels(contents, max_pixels, name)
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    image = tf.image.convert_image_dtype(image, tf.float32)
    image = tf.image.resize(image, [size, size], antialias=True)
    return tf.clip_by_value(image, 0.0, 1.0)
