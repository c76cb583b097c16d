"""Reading format, pixel count and clip length from a file's first bytes, before any decoder runs."""
from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest
import tensorflow as tf

from tests.media_files import TINY_GIF, bmp_bytes, gif_animation, png_header_only
from tfmmrec.media.headers import audio_format, gif_canvas, image_format, image_size, wav_info
from tfmmrec.media.image import image_pixels


def wav(rate: int, channels: int, width: int, frames: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(bytes(frames * channels * width))
    return buf.getvalue()


@pytest.mark.parametrize("data, fmt, size", [
    (tf.io.encode_png(np.zeros((30, 50, 3), np.uint8)).numpy(), "png", (50, 30)),
    (tf.io.encode_jpeg(np.zeros((30, 50, 3), np.uint8)).numpy(), "jpeg", (50, 30)),
    (TINY_GIF, "gif", (1, 1)),
    (bmp_bytes(3, 2), "bmp", (3, 2)),
    (png_header_only(12000, 12000), "png", (12000, 12000)),
    (b"RIFF\x20\x00\x00\x00WEBPVP8 " + bytes(20), "webp", None),
    (b"II*\x00" + bytes(20), "tiff", None),
    (b"\x00\x00\x00\x1cftypheic" + bytes(20), "heic", None),
    (b"not an image at all", None, None),
], ids=["png", "jpeg", "gif", "bmp", "png-bomb-header", "webp", "tiff", "heic", "not-an-image"])
def test_image_format_and_size_from_the_header(data: bytes, fmt: str | None, size: tuple[int, int] | None) -> None:
    assert image_format(data) == fmt
    assert image_size(data) == size
    expected = size[0] * size[1] if size else -1
    assert int(image_pixels(tf.constant(data))) == expected  # the in-graph reader agrees


def test_gif_cost_is_frames_times_canvas_in_python_and_in_the_graph() -> None:
    """TF decodes every frame onto the largest frame's canvas: that, not the header's screen, is the cost."""
    assert gif_canvas(TINY_GIF) == (1, 1, 1)
    anim = gif_animation(20, 10, 7)  # screen 20 x 10, seven 1 x 1 frames
    assert gif_canvas(anim) == (7, 1, 1)
    assert tf.io.decode_gif(anim).shape == (7, 1, 1, 3)  # what TF really allocates
    assert int(image_pixels(tf.constant(anim))) == 20 * 10  # the screen, the larger of the two here
    big_frame = gif_animation(1, 1, 2, frame_size=(3000, 2000))  # a 1 x 1 screen hiding large frames
    assert gif_canvas(big_frame) == (2, 3000, 2000)
    assert int(image_pixels(tf.constant(big_frame))) == 2 * 3000 * 2000


def test_wav_header_gives_length_and_format() -> None:
    info = wav_info(wav(8000, 2, 2, 4000))
    assert (info.sample_rate, info.channels, info.bits, info.frames) == (8000, 2, 16, 4000)
    assert info.seconds == pytest.approx(0.5)
    assert wav_info(wav(16000, 1, 2, 0)).frames == 0
    assert wav_info(wav(16000, 1, 3, 160)).frames == 160  # 24-bit
    assert wav_info(b"RIFF\x00\x00\x00\x00WAVE") is None  # no chunks: left to the decoder
    liar = wav(16000, 1, 2, 10)
    liar = liar[:40] + struct.pack("<I", 2**31) + liar[44:]
    assert wav_info(liar).seconds > 600  # judged by what it declares


@pytest.mark.parametrize("data, fmt", [(wav(16000, 1, 2, 1), "wav"), (b"ID3\x03" + bytes(20), "mp3"),
                                       (b"\xff\xfb\x90" + bytes(20), "mp3"), (b"fLaC" + bytes(20), "flac"),
                                       (b"OggS" + bytes(20), "ogg"), (b"garbage", None)])
def test_audio_format(data: bytes, fmt: str | None) -> None:
    assert audio_format(data) == fmt
