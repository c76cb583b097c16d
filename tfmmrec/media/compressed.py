"""Compressed audio files (FLAC, Ogg Vorbis/Opus, MP3) -> WAV bytes, before the graph decoder.

Core TensorFlow has no FLAC/Ogg/MP3 decoder, and a custom op in the graph would make the export
unservable by the stock TF Serving binary. So in the encoding stage a compressed file is decoded
outside the graph by a maintained decoder and rewritten as a 32-bit float WAV, which then goes
through the one graph decoder (``media.audio.decode_wav``) like any WAV: same down-mix, same
resampler. Decoders, in order:

- ``soundfile`` (libsndfile 1.1+: FLAC, Ogg Vorbis/Opus, MP3): ``pip install "tfmmrec[audio]"``;
- tensorflow-io (``tfmmrec[io]``) where its ops load (TF 2.16/2.17 only).

Without either, such files are not decoded and are counted in the decode report as
``unsupported format ... (install tfmmrec[audio])``, not as corrupt. The serving signature takes
WAV only (send WAV bytes; other bytes fail the request naming the modality).
"""
from __future__ import annotations

import functools
import io
import struct
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfmmrec.media.audio import WAVE_FORMAT_IEEE_FLOAT, decode_wav

INSTALL_HINT = "install tfmmrec[audio]"


def sniff_compressed(head: bytes) -> str | None:
    """``"FLAC"``, ``"Ogg"`` or ``"MP3"`` from a file's first bytes; ``None`` for anything else (WAV)."""
    if head.startswith(b"fLaC"):
        return "FLAC"
    if head.startswith(b"OggS"):
        return "Ogg"
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "MP3"  # an ID3 tag, or an MPEG audio frame sync
    return None


@functools.cache
def available_decoder() -> str | None:
    """``"soundfile"``, ``"tensorflow-io"`` (only where its ops load) or ``None``."""
    try:
        import soundfile  # noqa: F401
        return "soundfile"
    except (ImportError, OSError):  # OSError: the package without its libsndfile
        pass
    return "tensorflow-io" if tfio_loads() else None


def tfio_loads() -> bool:
    """Whether tensorflow-io is installed and its compiled ops load with this TF (2.16/2.17 only)."""
    try:
        import tensorflow_io as tfio
        tfio.audio.resample(tf.zeros([8, 1]), rate_in=8000, rate_out=16000)
        return True
    except Exception:  # not installed, or NotImplementedError: libtensorflow_io.so ... undefined symbol
        return False


def unsupported_reason(path: str | Path) -> str | None:
    """Why this file cannot be decoded here (a compressed format and no decoder), else ``None``."""
    with open(path, "rb") as f:
        kind = sniff_compressed(f.read(4))
    if kind is None or available_decoder() is not None:
        return None
    return f"unsupported format {kind} ({INSTALL_HINT})"


def float_wav(samples: np.ndarray, rate: int) -> bytes:
    """``[frames, channels]`` float32 samples as a WAVE_FORMAT_IEEE_FLOAT file."""
    data = np.ascontiguousarray(samples, "<f4").tobytes()
    channels = samples.shape[1]
    fmt = struct.pack("<HHIIHH", WAVE_FORMAT_IEEE_FLOAT, channels, rate, rate * channels * 4, channels * 4, 32)
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE"
            + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data)


def to_wav_bytes(contents: bytes, decoder: str | None = None) -> bytes:
    """Compressed audio bytes -> float WAV bytes; anything else is returned unchanged.

    Raises:
      ValueError: a compressed format and no decoder (``decoder=None`` picks the available one).
    """
    kind = sniff_compressed(contents[:4])
    if kind is None:
        return contents
    decoder = decoder or available_decoder()
    if decoder == "soundfile":
        import soundfile

        samples, rate = soundfile.read(io.BytesIO(contents), dtype="float32", always_2d=True)
    elif decoder == "tensorflow-io":
        samples, rate = _read_with_tfio(contents, kind)
    else:
        raise ValueError(f"unsupported format {kind} ({INSTALL_HINT})")
    return float_wav(samples, int(rate))


def _read_with_tfio(contents: bytes, kind: str) -> tuple[np.ndarray, int]:
    import tensorflow_io as tfio

    suffix = {"FLAC": ".flac", "Ogg": ".ogg", "MP3": ".mp3"}[kind]
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:  # AudioIOTensor reads files, not bytes
        f.write(contents)
        f.flush()
        audio = tfio.audio.AudioIOTensor(f.name)
        samples = audio.to_tensor().numpy()
        rate = int(audio.rate.numpy())
    if samples.dtype.kind == "i":
        samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
    return samples.astype(np.float32), rate


def decode_audio(contents: tf.Tensor, max_seconds: float, max_input_seconds: float | None = None) -> tf.Tensor:
    """``decode_wav`` for catalog files in tf.data: compressed bytes are turned into WAV first (in
    Python, through ``tf.numpy_function``; WAV bytes never leave the graph)."""
    head = tf.strings.substr(tf.strings.join([contents, tf.constant(b"\x00" * 4)]), 0, 4)
    first = tf.io.decode_raw(head, tf.uint8)
    compressed = tf.reduce_any([
        tf.equal(head, b"fLaC"), tf.equal(head, b"OggS"), tf.equal(tf.strings.substr(head, 0, 3), b"ID3"),
        (first[0] == 0xFF) & (first[1] >= 0xE0)])  # MPEG audio frame sync

    def convert() -> tf.Tensor:
        # numpy_function hands bytes over as numpy "S" strings, which drop trailing NULs (Ogg pages and
        # WAV samples can end in them): a 0x01 sentinel travels at the end each way and is cut off.
        def to_wav(marked: object) -> bytes:
            return to_wav_bytes(np.asarray(marked).item()[:-1]) + b"\x01"

        marked = tf.numpy_function(to_wav, [tf.strings.join([contents, b"\x01"])], tf.string, stateful=False)
        marked = tf.ensure_shape(marked, [])
        return tf.strings.substr(marked, 0, tf.strings.length(marked) - 1)

    return decode_wav(tf.cond(compressed, convert, lambda: contents), max_seconds, max_input_seconds)
