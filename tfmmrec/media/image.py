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


def _byte(contents: tf.Tensor, pos: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """The byte at ``pos`` as int64 (0 past the end)."""
    safe = tf.minimum(pos, tf.maximum(length - 1, 0))
    value = tf.cast(tf.io.decode_raw(tf.strings.substr(contents, safe, 1), tf.uint8)[0], tf.int64)
    return tf.where(pos < length, value, tf.constant(0, tf.int64))


def _gif_canvas_pixels(contents: tf.Tensor) -> tf.Tensor:
    """frames x largest frame width x height of a GIF, walking its blocks with a ``tf.while_loop``
    (one step per block or 255-byte sub-block): what ``tf.io.decode_gif`` allocates, whatever the
    screen size in the header says. Same walk as ``media.headers.gif_canvas``."""
    length = tf.cast(tf.strings.length(contents), tf.int64)
    b = _header_bytes(contents)
    gct = tf.where(b[10] >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), b[10] % 8), 0)
    zero = tf.constant(0, tf.int64)

    def step(pos, in_blocks, frames, width, height, done):  # noqa: ANN001, ANN202
        byte = _byte(contents, pos, length)

        def sub_block():  # noqa: ANN202
            return pos + 1 + byte, byte > 0, frames, width, height, done

        def block():  # noqa: ANN202
            is_ext, is_img = tf.equal(byte, 0x21), tf.equal(byte, 0x2C)
            w = _byte(contents, pos + 5, length) + 256 * _byte(contents, pos + 6, length)
            h = _byte(contents, pos + 7, length) + 256 * _byte(contents, pos + 8, length)
            flags = _byte(contents, pos + 9, length)
            lct = tf.where(flags >= 128, 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), flags % 8), 0)
            new_pos = tf.where(is_ext, pos + 2, tf.where(is_img, pos + 11 + lct, pos))
            return (new_pos, is_ext | is_img, frames + tf.cast(is_img, tf.int64),
                    tf.where(is_img, tf.maximum(width, w), width), tf.where(is_img, tf.maximum(height, h), height),
                    ~(is_ext | is_img))
        out = tf.cond(in_blocks, sub_block, block)
        return (*out[:5], out[5] | (out[0] >= length))

    _, _, frames, width, height, _ = tf.while_loop(
        lambda pos, in_blocks, frames, width, height, done: ~done, step,
        (13 + gct, tf.constant(False), zero, zero, zero, tf.constant(False)),
        maximum_iterations=tf.cast(length, tf.int32) + 1)
    return frames * width * height


def image_pixels(contents: tf.Tensor) -> tf.Tensor:
    """Width x height declared by a PNG (IHDR), BMP or JPEG (SOF marker) header, as int64; a GIF's
    frames x canvas (see ``_gif_canvas_pixels``); -1 for other bytes (``tf.io.decode_image``
    rejects them anyway)."""
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
        (gif, lambda: tf.maximum(_uint(b, 6, 2, False) * _uint(b, 8, 2, False), _gif_canvas_pixels(contents))),
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
