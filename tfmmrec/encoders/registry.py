"""Named encoders and their input contracts, loaded through ``hub.KerasLayer``.

A name says which model, which modality it reads and what input it expects (image size,
clip length), so the media pipeline can prepare exactly that input. Handles may be TF-Hub /
Kaggle URLs or local SavedModel directories; the built-in ones are written on first use.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import tensorflow_hub as hub

from tfmmrec.encoders.builtin import builtin_encoder_path


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder's identity and input contract.

    Attributes:
      name: registry key; also part of the embedding-cache key.
      kind: the modality it reads: ``text`` (strings), ``image`` (float [b, s, s, 3] in [0, 1]),
        ``audio`` (16 kHz mono float [b, samples]).
      handle: URL or directory of the SavedModel; ``None`` for a built-in encoder.
      image_size: side of the square input image (``image`` only).
      audio_seconds: clip length fed to the model (``audio`` only).
    """

    name: str
    kind: str
    handle: str | None = None
    image_size: int = 64
    audio_seconds: float = 2.0


ENCODERS: dict[str, EncoderSpec] = {
    "builtin-text": EncoderSpec("builtin-text", "text"),
    "builtin-image": EncoderSpec("builtin-image", "image", image_size=64),
    "builtin-audio": EncoderSpec("builtin-audio", "audio", audio_seconds=2.0),
}
DEFAULT_ENCODERS = {"text": "builtin-text", "image": "builtin-image", "audio": "builtin-audio"}


def tfmmrec_home() -> Path:
    """Where built-in encoders are written: ``$TFMMREC_HOME`` or ``~/.cache/tfmmrec``."""
    return Path(os.environ.get("TFMMREC_HOME", Path.home() / ".cache" / "tfmmrec"))


def get_encoder_spec(name: str) -> EncoderSpec:
    try:
        return ENCODERS[name]
    except KeyError:
        raise KeyError(f"unknown encoder {name!r}; registered: {sorted(ENCODERS)}") from None


def load_encoder(spec: EncoderSpec, *, trainable: bool = False) -> hub.KerasLayer:
    """The encoder as a Keras layer (frozen unless ``trainable``)."""
    handle = spec.handle or str(builtin_encoder_path(spec.kind, tfmmrec_home() / "hub"))
    return hub.KerasLayer(handle, trainable=trainable, name=spec.name.replace("-", "_"))
