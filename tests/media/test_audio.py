"""The core-TF WAV decoder: every common WAV format, a band-limited resampler measured against
``scipy.signal.resample_poly``, and a clear error for every kind of bad header."""
from __future__ import annotations

import struct
from math import gcd

import numpy as np
import pytest
import tensorflow as tf
from scipy.signal import resample_poly

from tfmmrec.media.audio import TARGET_RATE, decode_wav

RATES = [8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000]


def wav_bytes(x: np.ndarray, rate: int, fmt: str = "pcm16", *, extensible: bool = False,
              extra_chunk: bytes = b"", promised_frames: int | None = None) -> bytes:
    """A WAV file of float samples ``[frames, channels]`` in [-1, 1], in one of the common encodings.

    ``extra_chunk`` (an odd-sized LIST chunk) goes between ``fmt `` and ``data``, as many writers put it;
    ``promised_frames`` makes the header claim another length than the data holds.
    """
    x = np.asarray(x, np.float64)
    frames, channels = x.shape
    if fmt == "pcm8":
        data, tag, bits = np.clip(np.round(x * 128 + 128), 0, 255).astype("u1").tobytes(), 1, 8
    elif fmt == "pcm16":
        data, tag, bits = np.clip(np.round(x * 32768), -32768, 32767).astype("<i2").tobytes(), 1, 16
    elif fmt == "pcm24":
        v = np.clip(np.round(x * 2 ** 23), -2 ** 23, 2 ** 23 - 1).astype("<i4").reshape(-1)
        data, tag, bits = v.view("u1").reshape(-1, 4)[:, :3].tobytes(), 1, 24
    elif fmt == "pcm32":
        data, tag, bits = np.clip(np.round(x * 2 ** 31), -2 ** 31, 2 ** 31 - 1).astype("<i4").tobytes(), 1, 32
    elif fmt == "float32":
        data, tag, bits = x.astype("<f4").tobytes(), 3, 32
    else:
        data, tag, bits = x.astype("<f8").tobytes(), 3, 64
    block = channels * bits // 8
    fmt_body = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * block, block, bits)
    if extensible:  # cbSize, valid bits, channel mask, SubFormat GUID (tag + the fixed KSDATAFORMAT tail)
        fmt_body += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + bytes.fromhex(
            "000000001000800000aa00389b71")
    size = len(data) if promised_frames is None else promised_frames * block
    chunks = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body
    if extra_chunk:
        chunks += b"LIST" + struct.pack("<I", len(extra_chunk)) + extra_chunk + b"\x00" * (len(extra_chunk) % 2)
    chunks += b"data" + struct.pack("<I", size) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def decode(data: bytes, seconds: float = 1.0, **kwargs) -> np.ndarray:
    return decode_wav(tf.constant(data), seconds, **kwargs).numpy()


def test_every_common_encoding_decodes_to_the_same_waveform() -> None:
    t = np.arange(16000) / 16000
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 440 * t), 0.25 * np.sin(2 * np.pi * 660 * t)], axis=1)
    mono = stereo.mean(axis=1)
    # quantisation step of each encoding bounds its error
    for fmt, tol in [("pcm8", 1 / 128), ("pcm16", 1 / 32768), ("pcm24", 2 ** -22), ("pcm32", 1e-7),
                     ("float32", 1e-7), ("float64", 1e-7)]:
        for extensible in (False, True):
            got = decode(wav_bytes(stereo, 16000, fmt, extensible=extensible, extra_chunk=b"INFOodd"))
            np.testing.assert_allclose(got, mono, atol=tol, err_msg=f"{fmt} extensible={extensible}")


@pytest.mark.parametrize("rate", RATES)
def test_resampler_matches_scipy_resample_poly(rate: int) -> None:
    """Stated tolerance: max |ours - resample_poly| <= 1e-6 for integer-ratio downsampling (32k/48k/96k:
    measured < 1e-7, float32 rounding), 1e-4 for 22.05k/44.1k (measured 3e-5 to 5e-5), and 6e-4 for
    upsampling (8k/11.025k: measured 3.2e-4 to 4.5e-4): resample_poly normalises its filter's total
    gain once, so each of its phases has a DC gain of 1/0.9995, ours is exactly 1 at every position.
    Signal: a 440 Hz tone (0.5) plus white noise (sd 0.1) filling the whole band, stereo."""
    rng = np.random.default_rng(rate)
    t = np.arange(rate) / rate
    x = np.clip(0.5 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(rate), -0.99, 0.99)
    stereo = np.stack([x, 0.5 * x], axis=1)
    got = decode(wav_bytes(stereo, rate, "float32"), 1.0)
    g = gcd(TARGET_RATE, rate)
    ref = resample_poly(stereo.astype(np.float32).astype(np.float64).mean(axis=1), TARGET_RATE // g, rate // g)
    ref = np.pad(ref[:TARGET_RATE], (0, max(0, TARGET_RATE - len(ref))))
    error = np.abs(got - ref).max()
    tolerance = 6e-4 if rate < TARGET_RATE else 1e-4 if rate % TARGET_RATE else 1e-6  # 16k: float32 rounding
    assert error <= tolerance, (rate, error)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000, 96000])
def test_resampled_tone_equals_the_tone_sampled_at_16k(rate: int) -> None:
    """Against the exact answer: a 1 kHz tone resampled to 16 kHz is that tone sampled at 16 kHz
    (away from the clip's edges, where the filter sees the zero padding): within 1e-3 of 0.5."""
    t = np.arange(2 * rate) / rate
    got = decode(wav_bytes(0.5 * np.sin(2 * np.pi * 1000 * t)[:, None], rate, "float32"), 2.0)
    exact = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(2 * TARGET_RATE) / TARGET_RATE)
    assert np.abs(got - exact)[500:-500].max() < 1e-3


def test_downsampling_removes_what_16k_cannot_hold_instead_of_aliasing_it() -> None:
    """A 12 kHz tone at 48 kHz is above the 8 kHz Nyquist: it must vanish, not fold back to 4 kHz
    (what linear interpolation does)."""
    t = np.arange(48000) / 48000
    got = decode(wav_bytes(0.5 * np.sin(2 * np.pi * 12000 * t)[:, None], 48000, "float32"))
    assert np.sqrt(np.mean(got[500:-500] ** 2)) < 1e-3 * 0.5


def test_clip_is_cut_or_zero_padded_and_decodes_the_same_inside_tf_data() -> None:
    t = np.arange(22050 // 2) / 22050
    data = wav_bytes(0.5 * np.sin(2 * np.pi * 300 * t)[:, None].repeat(2, axis=1), 22050)
    eager = decode(data, 1.0)
    assert eager.shape == (TARGET_RATE,) and np.abs(eager[TARGET_RATE // 2 + 50:]).max() == 0.0
    assert decode(data, 0.25).shape == (TARGET_RATE // 4,)
    np.testing.assert_array_equal(decode(data, 0.25), eager[:TARGET_RATE // 4])
    ds = tf.data.Dataset.from_tensor_slices([data, data]).map(lambda b: decode_wav(b, 1.0))
    for graph in ds:
        np.testing.assert_allclose(graph.numpy(), eager, atol=1e-7)


GOOD = wav_bytes(np.zeros((1600, 1)), 16000)


@pytest.mark.parametrize("data,message", [
    (b"ID3\x03not a wav file at all", "not a RIFF/WAVE file"),
    (GOOD[:12] + b"data" + GOOD[-3204:], "no fmt chunk"),
    (GOOD[:36], "no data chunk"),
    (GOOD[:22] + struct.pack("<H", 0) + GOOD[24:], "0 channels"),
    (GOOD[:24] + struct.pack("<I", 0) + GOOD[28:], "sample rate 0"),
    (GOOD[:20] + struct.pack("<H", 2) + GOOD[22:], "unsupported WAV format"),  # 2 = MS ADPCM
    (GOOD[:34] + struct.pack("<H", 12) + GOOD[36:], "unsupported WAV format"),  # 12-bit PCM
    (GOOD[: len(GOOD) // 2], "shorter than its header says"),
    (wav_bytes(np.zeros((0, 1)), 16000), "empty audio clip"),
])
def test_bad_headers_fail_with_a_message_naming_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        decode(data)
    ds = tf.data.Dataset.from_tensors(data).map(lambda b: decode_wav(b, 1.0))  # same inside a graph
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        next(iter(ds))


def test_a_clip_longer_than_max_input_seconds_is_refused_from_its_header() -> None:
    long = wav_bytes(np.zeros((5 * 8000, 2)), 8000)
    assert decode(long, 1.0, max_input_seconds=5.0).shape == (TARGET_RATE,)
    with pytest.raises(tf.errors.InvalidArgumentError, match="over the limit of"):
        decode(long, 1.0, max_input_seconds=4.0)
