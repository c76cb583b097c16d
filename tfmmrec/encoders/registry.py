"""Named encoders and their input contracts.

A name says which model, which modality it reads and what input it expects, so the media
pipeline prepares exactly that input and ``encoders.contracts`` calls the model the one way it
must be called. The pretrained models are addressed by their Kaggle Models handles (where
tfhub.dev now redirects); the built-in compact encoders are registered the same way, with no
handle (written on first use), and stay the offline default.

A config may name a registered encoder (``yamnet``), or one with its handle replaced by a
local copy (``yamnet@/models/yamnet``), which is how a pre-downloaded model is used offline.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import tensorflow_hub as hub

from tfmmrec.encoders.builtin import BUILTIN_VERSION, builtin_encoder_path
from tfmmrec.encoders.handles import resolve_handle

#: How a model is called. ``strings``: text [b] -> [b, d]. ``bert``: text -> matching
#: preprocess model -> dict (input_word_ids, input_mask, input_type_ids) -> encoder -> dict
#: (pooled_output, sequence_output). ``image``: float [b, s, s, 3] in [0, 1] -> [b, d].
#: ``waveform_batch``: 16 kHz float [b, samples] -> [b, d]. ``waveform_frames``: one 16 kHz clip
#: [samples] -> per-frame outputs [frames, d] (YAMNet, VGGish, TRILL), pooled over frames.
CONTRACTS = ("strings", "bert", "image", "waveform_batch", "waveform_frames")


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder's identity and input contract.

    Attributes:
      name: registry key; with ``encoder_id`` part of the embedding-store key.
      kind: the modality it reads: ``text``, ``image`` or ``audio``.
      handle: URL or directory of the SavedModel; ``None`` for a built-in encoder.
      image_size: side of the square input image (``image`` only).
      audio_seconds: clip length fed to the model (``audio`` only).
      contract: how the model is called, one of ``CONTRACTS``.
      preprocess: the matching preprocessing model (``bert`` only).
      seq_length: BERT's sequence length; 128 is the preprocess model's own default.
      pooling: ``bert``: ``pooled`` (pooled_output) or ``mean`` (sequence_output averaged over the
        input mask); ``waveform_frames``: ``mean`` over frames.
      output: which output holds the embedding: an index into a tuple output (YAMNet: 1) or a
        dict key (TRILL: ``embedding``); ``None`` when the model returns one tensor.
      dim: the embedding width, for documentation and checks (``None``: whatever comes out).
      sample_rate_arg: the model takes ``sample_rate`` as a second argument (TRILL).
    """

    name: str
    kind: str
    handle: str | None = None
    image_size: int = 64
    audio_seconds: float = 2.0
    contract: str = ""
    preprocess: str | None = None
    seq_length: int = 128
    pooling: str = "pooled"
    output: str | int | None = None
    dim: int | None = None
    sample_rate_arg: bool = False

    def __post_init__(self) -> None:
        if not self.contract:
            default = {"text": "strings", "image": "image", "audio": "waveform_batch"}[self.kind]
            object.__setattr__(self, "contract", default)
        if self.contract not in CONTRACTS:
            raise ValueError(f"encoder {self.name!r}: contract {self.contract!r} is not one of {CONTRACTS}")

    @property
    def encoder_id(self) -> str:
        """Name plus a digest of everything that changes the embeddings (handle, input size,
        sequence length, pooling, built-in version): the store never mixes two of them."""
        parts = [self.handle or f"builtin-v{BUILTIN_VERSION}", self.preprocess or "", self.contract,
                 str(self.image_size) if self.kind == "image" else "",
                 str(self.audio_seconds) if self.kind == "audio" else "",
                 f"{self.seq_length}:{self.pooling}" if self.contract == "bert" else self.pooling,
                 str(self.output)]
        digest = hashlib.sha1("\0".join(parts).encode()).hexdigest()[:10]
        return f"{self.name}-{digest}"


_KAGGLE = "https://www.kaggle.com/models"
ENCODERS: dict[str, EncoderSpec] = {}


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    """Add (or replace) a named encoder, e.g. your own SavedModel with one of the contracts."""
    ENCODERS[spec.name] = spec
    return spec


for _spec in (
    EncoderSpec("builtin-text", "text"),
    EncoderSpec("builtin-image", "image", image_size=64),
    EncoderSpec("builtin-audio", "audio", audio_seconds=2.0),
    # Text. Small BERT for speed, BERT-Base for quality; both take the same preprocessing model.
    EncoderSpec("small-bert", "text", f"{_KAGGLE}/tensorflow/bert/TensorFlow2/bert-en-uncased-l-4-h-512-a-8/2",
                contract="bert", preprocess=f"{_KAGGLE}/tensorflow/bert/TensorFlow2/en-uncased-preprocess/3",
                dim=512),
    EncoderSpec("bert-base", "text", f"{_KAGGLE}/tensorflow/bert/TensorFlow2/en-uncased-l-12-h-768-a-12/4",
                contract="bert", preprocess=f"{_KAGGLE}/tensorflow/bert/TensorFlow2/en-uncased-preprocess/3",
                dim=768),
    EncoderSpec("use", "text",
                f"{_KAGGLE}/google/universal-sentence-encoder/TensorFlow2/universal-sentence-encoder/2",
                contract="strings", dim=512),
    # Image feature vectors: [0, 1] RGB at the model's own size.
    EncoderSpec("inception-v3", "image", f"{_KAGGLE}/google/inception-v3/TensorFlow2/feature-vector/2",
                image_size=299, dim=2048),
    EncoderSpec("mobilenet-v2", "image", f"{_KAGGLE}/google/mobilenet-v2/TensorFlow2/100-224-feature-vector/2",
                image_size=224, dim=1280),
    EncoderSpec("efficientnet-b0", "image", f"{_KAGGLE}/tensorflow/efficientnet/TensorFlow2/b0-feature-vector/1",
                image_size=224, dim=1280),
    # Audio: one 16 kHz mono clip in, per-frame outputs, mean-pooled over frames.
    EncoderSpec("yamnet", "audio", f"{_KAGGLE}/google/yamnet/TensorFlow2/yamnet/1", audio_seconds=10.0,
                contract="waveform_frames", pooling="mean", output=1, dim=1024),
    EncoderSpec("vggish", "audio", f"{_KAGGLE}/google/vggish/TensorFlow2/vggish/1", audio_seconds=10.0,
                contract="waveform_frames", pooling="mean", dim=128),
    EncoderSpec("trill", "audio", "https://tfhub.dev/google/nonsemantic-speech-benchmark/trill/3",
                audio_seconds=10.0, contract="waveform_frames", pooling="mean", output="embedding", dim=512,
                sample_rate_arg=True),
):
    register_encoder(_spec)

DEFAULT_ENCODERS = {"text": "builtin-text", "image": "builtin-image", "audio": "builtin-audio"}


def tfmmrec_home() -> Path:
    """Where built-in encoders are written: ``$TFMMREC_HOME`` or ``~/.cache/tfmmrec``."""
    return Path(os.environ.get("TFMMREC_HOME", Path.home() / ".cache" / "tfmmrec"))


def get_encoder_spec(name: str) -> EncoderSpec:
    """A registered encoder by name. ``NAME@HANDLE`` replaces its handle (e.g. a local directory),
    ``NAME@HANDLE+PREPROCESS`` also the preprocessing model's (BERT)."""
    base, sep, handles = name.partition("@")
    try:
        spec = ENCODERS[base]
    except KeyError:
        raise KeyError(f"unknown encoder {base!r}; registered: {sorted(ENCODERS)}") from None
    if not sep:
        return spec
    handle, plus, preprocess = handles.partition("+")
    return dataclasses.replace(spec, handle=handle, preprocess=preprocess if plus else spec.preprocess)


def encoder_handle(spec: EncoderSpec) -> str:
    """A local SavedModel directory for the encoder (built-in: written on first use)."""
    if spec.handle is None:
        return str(builtin_encoder_path(spec.kind, tfmmrec_home() / "hub"))
    return resolve_handle(spec.handle, name=spec.name)


def load_encoder(spec: EncoderSpec, *, trainable: bool = False) -> hub.KerasLayer:
    """The encoder as a Keras layer (frozen unless ``trainable``)."""
    return hub.KerasLayer(encoder_handle(spec), trainable=trainable, name=spec.name.replace("-", "_"))
