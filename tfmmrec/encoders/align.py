"""Self-supervised cross-modal alignment of an item's modalities (CLIP-style InfoNCE).

Frozen encoders put text, images and audio in unrelated spaces: a "red vintage lamp" text
vector and the lamp's photo vector have nothing in common until a model learns the link from
interactions, which cold items do not have. Here a small projection head per modality maps
each frozen embedding into one shared space, trained so that an item's modalities land
close to each other and far from other items' (the symmetric InfoNCE loss of CLIP, Radford et
al. 2021, over every pair of modalities). No interaction is used, so every catalog item
takes part, including those nobody has interacted with yet (the semi-supervised part).

An item's joint embedding is the mean of its present modalities' projections (missing ones
are masked out), L2-normalised. ``add_aligned_modality`` hands it to the models as one more
content modality, ``aligned``, and caches it next to the embedding store.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfmmrec.config import PretrainConfig
from tfmmrec.data.loader import Dataset
from tfmmrec.data.standardize import zscore
from tfmmrec.encoders.encode import ItemContent
from tfmmrec.encoders.store import default_cache_dir

ALIGNED = "aligned"


@keras.utils.register_keras_serializable(package="tfmmrec")
class ProjectionHead(keras.layers.Layer):
    """Frozen embedding -> L2-normalised point in the shared space (a one-hidden-layer MLP)."""

    def __init__(self, dim: int = 64, hidden: int = 128, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dim, self.hidden = dim, hidden
        self.mlp = keras.Sequential([keras.layers.Dense(hidden, activation="gelu"), keras.layers.Dense(dim)])

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.math.l2_normalize(self.mlp(x), axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dim": self.dim, "hidden": self.hidden}


def info_nce(za: tf.Tensor, zb: tf.Tensor, both: tf.Tensor, temperature: float) -> tf.Tensor:
    """Symmetric InfoNCE between two modalities over the items of a batch that have both.

    Row i's positive is column i (the same item); every other item with both modalities is a
    negative. Items lacking either modality are left out of rows and columns alike.
    """
    za, zb = tf.boolean_mask(za, both), tf.boolean_mask(zb, both)
    n = tf.shape(za)[0]
    logits = tf.matmul(za, zb, transpose_b=True) / temperature
    labels = tf.range(n)
    loss = (tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            + tf.nn.sparse_softmax_cross_entropy_with_logits(labels, tf.transpose(logits)))
    return tf.math.divide_no_nan(tf.reduce_sum(loss), 2.0 * tf.cast(n, tf.float32)) * tf.cast(n > 1, tf.float32)


class CrossModalAligner(keras.Model):
    """One projection head per modality; ``joint`` averages the present ones."""

    def __init__(self, modalities: list[str], dim: int, hidden: int, temperature: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.modalities = sorted(modalities)
        self.temperature = temperature
        self.heads = {m: ProjectionHead(dim, hidden, name=f"head_{m}") for m in self.modalities}

    def project(self, x: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {m: self.heads[m](x[m]) for m in self.modalities}

    def alignment_loss(self, x: dict[str, tf.Tensor], masks: dict[str, tf.Tensor]) -> tf.Tensor:
        z = self.project(x)
        pairs = list(itertools.combinations(self.modalities, 2))
        losses = [info_nce(z[a], z[b], tf.logical_and(masks[a], masks[b]), self.temperature) for a, b in pairs]
        return tf.add_n(losses) / len(losses)

    def joint(self, x: dict[str, tf.Tensor], masks: dict[str, tf.Tensor]) -> tf.Tensor:
        z = self.project(x)
        total = tf.add_n([z[m] * tf.cast(masks[m], tf.float32)[:, None] for m in self.modalities])
        return tf.math.l2_normalize(total, axis=-1)


@dataclass
class Alignment:
    """The joint embeddings ``[num_items, dim]``, their mask, and how training went."""

    embeddings: np.ndarray
    mask: np.ndarray
    losses: list[float] = field(default_factory=list)
    match_before: dict[str, float] = field(default_factory=dict)
    match_after: dict[str, float] = field(default_factory=dict)


def cross_modal_match(za: np.ndarray, zb: np.ndarray, both: np.ndarray, sample: int = 2000, seed: int = 0) -> float:
    """Share of items whose nearest neighbour in modality b (among items with both) is itself."""
    rows = np.flatnonzero(both)
    if len(rows) < 2:
        return float("nan")
    rows = np.random.default_rng(seed).permutation(rows)[:sample]
    a = za[rows] / (np.linalg.norm(za[rows], axis=1, keepdims=True) + 1e-9)
    b = zb[rows] / (np.linalg.norm(zb[rows], axis=1, keepdims=True) + 1e-9)
    return float(np.mean(np.argmax(a @ b.T, axis=1) == np.arange(len(rows))))


def align_modalities(content: ItemContent, cfg: PretrainConfig, *, verbose: bool = False) -> Alignment:
    """Train projection heads on all items of ``content`` and return their joint embeddings.

    Raw-space match rates (``match_before``) compare modalities of equal width only; the heads
    are what makes unequal spaces comparable at all.
    """
    modalities = [m for m in content.modalities if m != ALIGNED]
    if len(modalities) < 2:
        raise ValueError(f"cross-modal alignment needs at least two modalities; the catalog has {modalities}")
    masks = {m: content.masks[m].astype(bool) for m in modalities}
    x = {m: zscore(content.embeddings[m], masks[m]) for m in modalities}
    n = len(next(iter(masks.values())))
    tf.keras.utils.set_random_seed(cfg.seed)
    model = CrossModalAligner(modalities, cfg.dim, cfg.hidden, cfg.temperature, name="aligner")
    optimizer = keras.optimizers.Adam(cfg.learning_rate)
    model.project({m: tf.constant(v[:2]) for m, v in x.items()})  # create the heads' weights outside tf.function
    optimizer.build(model.trainable_variables)

    @tf.function
    def step(xb: dict[str, tf.Tensor], mb: dict[str, tf.Tensor]) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = model.alignment_loss(xb, mb)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    ds = tf.data.Dataset.from_tensor_slices((x, masks)).shuffle(n, seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size, drop_remainder=n >= 2 * cfg.batch_size)
    result = Alignment(np.zeros((n, cfg.dim), np.float32), np.zeros(n, bool))
    for epoch in range(cfg.epochs):
        losses = [float(step(xb, mb)) for xb, mb in ds]
        result.losses.append(float(np.mean(losses)))
        if verbose and (epoch == 0 or (epoch + 1) % 10 == 0 or epoch + 1 == cfg.epochs):
            print(f"  [pretrain] epoch {epoch + 1}/{cfg.epochs}: InfoNCE {result.losses[-1]:.4f}", flush=True)
    projected: dict[str, list[np.ndarray]] = {m: [] for m in modalities}
    joint = []
    for start in range(0, n, 4096):
        xb = {m: tf.constant(v[start:start + 4096]) for m, v in x.items()}
        mb = {m: tf.constant(v[start:start + 4096]) for m, v in masks.items()}
        for m, z in model.project(xb).items():
            projected[m].append(z.numpy())
        joint.append(model.joint(xb, mb).numpy())
    result.embeddings = np.concatenate(joint).astype(np.float32)
    result.mask = np.any(np.stack([masks[m] for m in modalities]), axis=0)
    result.embeddings[~result.mask] = 0.0
    for a, b in itertools.combinations(modalities, 2):
        both = masks[a] & masks[b]
        if x[a].shape[1] == x[b].shape[1]:
            result.match_before[f"{a}-{b}"] = cross_modal_match(x[a], x[b], both)
        result.match_after[f"{a}-{b}"] = cross_modal_match(np.concatenate(projected[a]), np.concatenate(projected[b]),
                                                           both)
    return result


def _digest(content: ItemContent, cfg: PretrainConfig) -> str:
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("enabled", "only_aligned")}  # how it is used
    h = hashlib.sha256(repr(sorted(settings.items())).encode())
    for m in sorted(m for m in content.modalities if m != ALIGNED):
        h.update(m.encode())
        h.update(np.ascontiguousarray(content.embeddings[m], np.float32).tobytes())
        h.update(np.ascontiguousarray(content.masks[m], bool).tobytes())
    return h.hexdigest()[:20]


def add_aligned_modality(dataset: Dataset, content: ItemContent, cfg: PretrainConfig, *,
                         cache_dir: str | Path | None = None, verbose: bool = False,
                         reseed: int | None = None) -> tuple[ItemContent, Alignment]:
    """``content`` plus the ``aligned`` modality, trained once per (content, config) and cached.

    The cache file is keyed by a digest of every input embedding and of the config, so a changed
    catalog or encoder retrains the heads and an unchanged one reuses them. ``reseed``: set the
    global random seed to this afterwards, so that what follows (model initialisation) is the same
    whether the heads were trained now or read from the cache.
    """
    directory = Path(cache_dir or default_cache_dir(dataset.root)) / ALIGNED
    path = directory / f"{_digest(content, cfg)}.npz"
    if path.is_file():
        with np.load(path) as data:
            match = json.loads(str(data["match"])) if "match" in data else {}
            alignment = Alignment(data["embeddings"], data["mask"], data["losses"].tolist(),
                                  match.get("before", {}), match.get("after", {}))
        if verbose:
            print(f"  [pretrain] aligned embeddings read from {path}", flush=True)
    else:
        alignment = align_modalities(content, cfg, verbose=verbose)
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / f".{path.name}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            match = json.dumps({"before": alignment.match_before, "after": alignment.match_after})
            np.savez(f, embeddings=alignment.embeddings, mask=alignment.mask, losses=np.array(alignment.losses),
                     match=np.array(match))
        os.replace(tmp, path)
    if reseed is not None:
        tf.keras.utils.set_random_seed(reseed)
    out = ItemContent(dict(content.embeddings), dict(content.masks), list(content.reports), dict(content.encoders),
                      dict(content.computed))
    if cfg.only_aligned:
        out.embeddings, out.masks = {}, {}
    out.embeddings[ALIGNED], out.masks[ALIGNED] = alignment.embeddings, alignment.mask
    out.encoders[ALIGNED] = f"pretrain-{path.stem}"
    return out, alignment


def pretrain_dataset(dataset_dir: str | Path, cfg: PretrainConfig | None = None, *,
                     encoders: dict[str, str] | None = None, cache_dir: str | Path | None = None,
                     verbose: bool = True) -> Alignment:
    """``tfmmrec pretrain``: encode (through the store) and align a dataset's modalities, caching the
    result where ``train`` with ``pretrain.enabled`` finds it."""
    from tfmmrec.data.loader import load_dataset
    from tfmmrec.encoders.encode import encode_catalog

    dataset = load_dataset(dataset_dir, on_unknown_items="drop")
    content = encode_catalog(dataset, encoders=encoders, cache_dir=cache_dir, progress=verbose)
    return add_aligned_modality(dataset, content, cfg or PretrainConfig(), cache_dir=cache_dir, verbose=verbose)[1]
