"""embed_item_content refuses request inputs over the run's limits, naming the input and the limit,
before anything is decoded."""
from __future__ import annotations

import wave
from io import BytesIO

import numpy as np
import pytest
import tensorflow as tf

from tests.media_files import png_header_only
from tfmmrec.config import LimitsConfig


def wav(seconds: float, rate: int = 16000, width: int = 2) -> bytes:
    buf = BytesIO()
    with wave.open(buf, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(bytes(int(rate * seconds) * width))
    return buf.getvalue()


@pytest.fixture(scope="module")
def embed(trained_run):
    loaded = tf.saved_model.load(str(trained_run.exports["retrieval"]))
    sig = loaded.signatures["embed_item_content"]

    def call(**given: object) -> dict[str, tf.Tensor]:
        inputs = {"text": [""], "image": [b""], "audio": [b""], "brand": [""], "price": [0.0]}
        inputs.update(given)
        return sig(**{k: tf.constant(v, tf.float32 if k == "price" else tf.string) for k, v in inputs.items()})
    return call


def test_inputs_within_the_limits_are_embedded(embed) -> None:
    image = tf.io.encode_png(np.zeros((16, 16, 3), np.uint8)).numpy()
    out = embed(text=["x" * LimitsConfig().max_text_chars], image=[image], audio=[wav(0.5)])["embedding"].numpy()
    assert out.shape[0] == 1 and np.isfinite(out).all()


@pytest.mark.parametrize("given, message", [
    (dict(text=["ok", "x" * (LimitsConfig().max_text_chars + 1)]), r"text: text over limits\.max_text_chars \(20000"),
    (dict(image=[png_header_only(12000, 12000)]), r"image: image over limits\.max_image_pixels \(40000000\)"),
    # A real clip just over the 600 s limit, kept small: 8-bit samples at 1 kHz (601 KB).
    (dict(audio=[wav(601, rate=1000, width=1)]), r"audio: clip of\] \[.*\] \[seconds is over the limit of\] \[600"),
    (dict(image=[b"RIFF\x20\x00\x00\x00WEBPVP8 " + bytes(40)]), r"image: bytes are not a PNG/JPEG/GIF/BMP image "
                                                                  r"\(an unsupported format such as WebP"),
])
def test_inputs_over_a_limit_are_refused_naming_input_and_limit(embed, given: dict, message: str) -> None:
    n = len(next(iter(given.values())))
    filled = {k: v * n for k, v in {"text": [""], "image": [b""], "audio": [b""], "brand": [""],
                                    "price": [0.0]}.items() if k not in given}
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        embed(**filled, **given)
