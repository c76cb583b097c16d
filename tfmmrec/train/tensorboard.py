"""TensorBoard for a training run: what to look at while a model trains and after.

One log directory per model (``RUN_DIR/tensorboard/multimodal``, ``.../id_only``, ``.../ranking``)
holds:

- ``train/`` and ``validation/``: Keras's own per-epoch losses and metrics (``epoch_loss`` ...);
- the model directory itself (one TensorBoard "run"): ``learning_rate`` per epoch, the weight
  of each modality in every fusion layer that exposes its weights (``fusion/<layer>/<modality>``),
  and histograms of the row norms of every embedding table (``embedding_norms/<table>``): rows
  of rare users/items stay near their initial norm, and a table whose norms explode or collapse
  shows it here first;
- the embedding projector: item embeddings after training (a checkpoint), ``metadata.tsv``
  (item id, title, categorical columns) and ``sprite.png`` (a thumbnail of each item's image),
  tied together by ``projector_config.pbtxt``.

``tensorboard --logdir RUN_DIR/tensorboard`` shows all models of the run side by side.

A retrieval model trained at several temperatures (``retrieval.temperature_candidates``) logs each
training to its own run inside the model directory (``multimodal/temperature_0.2/train``, ...,
made by the callbacks' ``for_subrun``), so the candidates' curves lie side by side instead of
one after the other; the projector, in the model directory, shows the kept candidate.

Fusion weights are read by duck typing, so any fusion can take part. A submodule with a
``modality_weights`` method returning ``{modality: weight}`` is logged, the weights averaged over
examples: called without arguments (a layer with global weights), or with ``probe_items`` (item
indices) when it takes one argument, as ``ItemTower.modality_weights(item)`` does for fusions that
weigh modalities per item. Those that raise ``TypeError`` (a fusion that does not weigh
modalities, e.g. concatenation) and layers that need more inputs are skipped.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf
import tf_keras as keras
from tensorboard.plugins import projector

from tfmmrec.config import ConfigError, LimitsConfig, RunConfig
from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.data.loader import Dataset
from tfmmrec.data.paths import PathRefused, resolve_in_root
from tfmmrec.evaluate.protocol import embed_all
from tfmmrec.media.image import image_pixels

THUMBNAIL_MAX_PIXELS = LimitsConfig().max_image_pixels

PROJECTOR_TENSOR = "item_embedding/.ATTRIBUTES/VARIABLE_VALUE"


def fusion_weights(model: tf.Module, probe_items: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """``{layer name: {modality: mean weight}}`` for every submodule that exposes modality weights."""
    out: dict[str, dict[str, float]] = {}
    for layer in [model, *model.submodules]:
        method = getattr(layer, "modality_weights", None)
        if not callable(method):
            continue
        required = [p for p in inspect.signature(method).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if len(required) > 1 or (required and probe_items is None):
            continue
        try:
            weights = method(probe_items) if required else method()
        except TypeError:
            continue  # e.g. ItemTower over a fusion that does not weigh modalities
        if weights:
            out[layer.name] = {m: float(np.mean(np.asarray(w, np.float64))) for m, w in weights.items()}
    return out


def embedding_row_norms(model: tf.Module) -> dict[str, np.ndarray]:
    """Row norms of every ``Embedding`` table in ``model`` (tower outputs are L2-normalised, so the
    tables are where magnitudes still say something)."""
    out = {}
    for layer in model.submodules:
        if isinstance(layer, keras.layers.Embedding) and layer.built:
            out[layer.name] = np.linalg.norm(layer.embeddings.numpy(), axis=1)
    return out


class RunLogger(keras.callbacks.Callback):
    """Per epoch: learning rate, fusion weights, embedding-norm histograms. At the end of training,
    optionally the projector (``projector``: a callable that writes it, see ``write_projector``)."""

    def __init__(self, log_dir: str | Path, *, histograms: bool = True,
                 projector: Callable[[], None] | None = None, probe_items: np.ndarray | None = None) -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self.probe_items = probe_items
        self.histograms = histograms
        self.projector = projector
        self._writer: tf.summary.SummaryWriter | None = None

    def for_subrun(self, name: str) -> RunLogger:
        """The same logging into ``log_dir/name``, without the projector (the caller writes it
        once for the training it keeps)."""
        return RunLogger(self.log_dir / name, histograms=self.histograms, probe_items=self.probe_items)

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._writer = tf.summary.create_file_writer(str(self.log_dir))

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        assert self._writer is not None
        with self._writer.as_default(step=epoch):
            lr = _learning_rate(self.model.optimizer)
            if lr is not None:
                tf.summary.scalar("learning_rate", lr)
            for layer, weights in fusion_weights(self.model, self.probe_items).items():
                for modality, w in weights.items():
                    tf.summary.scalar(f"fusion/{layer}/{modality}", w)
            if self.histograms:
                for table, norms in embedding_row_norms(self.model).items():
                    tf.summary.histogram(f"embedding_norms/{table}", norms)
        self._writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
        if self.projector is not None:
            self.projector()


def _learning_rate(optimizer: Any) -> float | None:
    lr = getattr(optimizer, "learning_rate", None)
    if lr is None:
        return None
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
        lr = lr(optimizer.iterations)
    return float(keras.backend.get_value(lr))


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras's TensorBoard callback, per epoch only (no graph, no profiler, no weight histograms:
    ``RunLogger`` logs the row norms that matter), with ``for_subrun`` as ``RunLogger`` has."""

    def __init__(self, log_dir: str | Path) -> None:
        super().__init__(str(log_dir), histogram_freq=0, write_graph=False, profile_batch=0)

    def for_subrun(self, name: str) -> EpochTensorBoard:
        return EpochTensorBoard(Path(self.log_dir) / name)


def tensorboard_callbacks(log_dir: str | Path, *, histograms: bool = True, projector: Callable[[], None] | None = None,
                          probe_items: np.ndarray | None = None) -> list[keras.callbacks.Callback]:
    """Keras's TensorBoard callback (losses and metrics per epoch) plus ``RunLogger``."""
    return [EpochTensorBoard(log_dir),
            RunLogger(log_dir, histograms=histograms, projector=projector, probe_items=probe_items)]


def write_projector(log_dir: str | Path, embeddings: np.ndarray, metadata: pd.DataFrame,
                    image_paths: Sequence[str | Path | None] | None = None, sprite_size: int = 32) -> Path:
    """Write item embeddings for TensorBoard's embedding projector; returns ``projector_config.pbtxt``.

    Args:
      embeddings: ``[n, d]`` item embeddings, row i = metadata row i.
      metadata: one row per item; all its columns are shown (a header row is written).
      image_paths: per item an image file (or None): thumbnails for ``sprite.png``. Items whose
        image is missing or does not decode get a grey tile, so rows stay aligned.
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    if len(metadata) != len(embeddings):
        raise ValueError(f"{len(metadata)} metadata rows for {len(embeddings)} embeddings")
    clean = metadata.astype(str).replace({r"[\t\r\n]": " "}, regex=True)
    clean.to_csv(log_dir / "metadata.tsv", sep="\t", index=False)
    checkpoint = tf.train.Checkpoint(item_embedding=tf.Variable(np.asarray(embeddings, np.float32)))
    checkpoint.save(str(log_dir / "embedding.ckpt"))
    config = projector.ProjectorConfig()
    emb = config.embeddings.add()
    emb.tensor_name = PROJECTOR_TENSOR
    emb.metadata_path = "metadata.tsv"
    if image_paths is not None:
        sprite = sprite_image(image_paths, sprite_size)
        tf.io.write_file(str(log_dir / "sprite.png"), tf.io.encode_png(sprite))
        emb.sprite.image_path = "sprite.png"
        emb.sprite.single_image_dim.extend([sprite_size, sprite_size])
    projector.visualize_embeddings(str(log_dir), config)
    return log_dir / "projector_config.pbtxt"


def sprite_image(image_paths: Sequence[str | Path | None], size: int) -> np.ndarray:
    """Thumbnails in a square grid, row-major in item order (the projector's sprite layout)."""
    side = max(1, math.ceil(math.sqrt(len(image_paths))))
    if side * size > 8192:
        raise ValueError(f"{len(image_paths)} thumbnails of {size}px exceed the projector's 8192px sprite; "
                         "lower tensorboard.projector_max_items or sprite_size")
    sprite = np.full((side * size, side * size, 3), 128, np.uint8)
    for i, path in enumerate(image_paths):
        thumb = _thumbnail(path, size)
        if thumb is not None:
            r, c = divmod(i, side)
            sprite[r * size:(r + 1) * size, c * size:(c + 1) * size] = thumb
    return sprite


def _thumbnail(path: str | Path | None, size: int) -> np.ndarray | None:
    if not path:
        return None
    try:  # the pixel count from the header first: a decompression bomb must not become a thumbnail
        contents = tf.io.read_file(str(path))
        if int(image_pixels(contents)) > THUMBNAIL_MAX_PIXELS:
            return None
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    except (tf.errors.OpError, ValueError):
        return None  # missing or undecodable: the caller leaves a grey tile
    return tf.cast(tf.image.resize(image, [size, size]), tf.uint8).numpy()


def tensorboard_dir(cfg: RunConfig, run_dir: str | Path) -> Path:
    """Where a run's TensorBoard logs go (``tensorboard --logdir`` this)."""
    return Path(run_dir) / cfg.tensorboard.log_dir


def run_callbacks(cfg: RunConfig, run_dir: str | Path, name: str, model: Any = None, ds: Dataset | None = None,
                  data: EncodedInteractions | None = None) -> list[Any]:
    """TensorBoard callbacks of one model of a run; with ``model``/``ds``/``data`` (retrieval)
    also the embedding projector of its item embeddings."""
    tb = cfg.tensorboard
    if not tb.enabled:
        return []
    log_dir = tensorboard_dir(cfg, run_dir) / name
    write = None
    if tb.projector and model is not None and ds is not None and data is not None:
        def write() -> None:
            _, item_emb = embed_all(model, data)
            metadata, images = projector_metadata(ds, tb.metadata_columns, tb.projector_max_items)
            write_projector(log_dir, item_emb[:len(metadata)], metadata, images, tb.sprite_size)
    # Fusion weights are averaged over (at most 2048 of) the catalog's items.
    probe = np.arange(1, min(ds.num_items, 2048) + 1, dtype=np.int32) if ds is not None else None
    return tensorboard_callbacks(log_dir, histograms=tb.histograms, projector=write, probe_items=probe)


def projector_metadata(ds: Dataset, columns: list[str], max_items: int) -> tuple[Any, list[Path | None] | None]:
    """The first ``max_items`` items' metadata (default: id, first text column, categorical
    columns) and image paths (first image modality; None where an item has no image)."""
    if not columns:
        texts = [c for spec in ds.manifest.modalities.values() if spec.kind == "text" for c in spec.columns[:1]]
        columns = ["item_id", *texts[:1], *ds.manifest.categorical]
    missing = [c for c in columns if c not in ds.items.columns]
    if missing:
        raise ConfigError(f"tensorboard.metadata_columns: {missing} not in the items table "
                          f"(columns: {list(ds.items.columns)})")
    items = ds.items.iloc[:max_items]
    images = None
    image_specs = [spec for spec in ds.manifest.modalities.values() if spec.kind == "image"]
    if image_specs:
        paths = items[image_specs[0].column].fillna("").astype(str)
        images = [_image_in_root(ds.root, p) for p in paths]
    return items[columns].reset_index(drop=True), images


def _image_in_root(root: Path, rel: str) -> Path | None:
    """The thumbnail file of an item, through the catalog path gate (None: a grey tile)."""
    try:
        return resolve_in_root(root, rel) if rel else None
    except PathRefused:
        return None
