"""Mask-aware fusion of an item's modality embeddings into one vector.

Every layer follows one call contract (see ``tfmmrec.fusion.base``)::

    layer(embeddings: dict[str, Tensor[b, d_m]], masks: dict[str, Tensor[b]], training=None) -> Tensor[b, output_dim]

``QueryCrossAttentionFusion`` also takes ``query=Tensor[b, q]`` and is for ranking / re-scoring only
(not the item tower of a two-tower model). Layers with ``weighs_modalities`` expose
``modality_weights(embeddings, masks[, query]) -> {modality: Tensor[b]}`` and accept
``balance_weight`` (modality-balance regulariser, off by default).

Build any of them by name with ``make_fusion``; ``ITEM_TOWER_FUSIONS`` lists the kinds usable in an
item tower (all but ``cross_attention``).
"""
from __future__ import annotations

import inspect
from typing import Any

import tf_keras as keras

from tfmmrec.fusion.attention import AttentionPoolingFusion, ModalityAttentionFusion
from tfmmrec.fusion.base import FusionLayer, masked_softmax
from tfmmrec.fusion.bilinear import BilinearFusion
from tfmmrec.fusion.concat import ConcatFusion
from tfmmrec.fusion.cross_attention import QueryCrossAttentionFusion
from tfmmrec.fusion.gated import GatedFusion
from tfmmrec.fusion.multilinear import MultilinearFusion
from tfmmrec.fusion.weighted import WeightedSumFusion

FUSIONS: dict[str, type[keras.layers.Layer]] = {
    "concat": ConcatFusion,
    "weighted_sum": WeightedSumFusion,
    "gated": GatedFusion,
    "bilinear": BilinearFusion,
    "multilinear": MultilinearFusion,
    "modality_attention": ModalityAttentionFusion,
    "attention_pooling": AttentionPoolingFusion,
    "cross_attention": QueryCrossAttentionFusion,
}
ITEM_TOWER_FUSIONS: tuple[str, ...] = tuple(k for k, cls in FUSIONS.items() if not getattr(cls, "needs_query", False))


def make_fusion(kind: str, output_dim: int, *, hidden_units: tuple[int, ...] | list[int] = (128,),
                dropout: float = 0.0, modality_dropout: float = 0.1, **kwargs: Any) -> keras.layers.Layer:
    """Build the fusion layer called ``kind`` (a key of ``FUSIONS``).

    ``kwargs`` go to the layer: e.g. ``projection_dim``, ``balance_weight`` (weighing layers),
    ``rank`` (multilinear), ``attention_units`` (modality_attention), ``num_heads``/``head_dim``.

    Example:
      >>> fusion = make_fusion("gated", 64, hidden_units=(128,), dropout=0.0, modality_dropout=0.1)
      >>> fusion(embeddings, masks, training=True)  # [batch, 64]
    """
    if kind not in FUSIONS:
        raise ValueError(f"unknown fusion {kind!r}; choose one of {sorted(FUSIONS)}")
    unknown = sorted(set(kwargs) - set(fusion_options(kind)))
    if unknown:
        raise ValueError(f"fusion {kind!r} has no option {unknown[0]!r}; its options: {fusion_options(kind)}")
    return FUSIONS[kind](output_dim, hidden_units=tuple(hidden_units), dropout=dropout,
                         modality_dropout=modality_dropout, **kwargs)


def fusion_options(kind: str) -> list[str]:
    """The keyword options the fusion ``kind`` takes besides the common ones (``output_dim``,
    ``hidden_units``, ``dropout``, ``modality_dropout``): read from its constructor and its bases',
    so a new layer's own option is settable (``retrieval.fusion_options``) with no change elsewhere."""
    common = {"self", "output_dim", "hidden_units", "dropout", "modality_dropout", "kwargs", "name"}
    names: list[str] = []
    for cls in FUSIONS[kind].__mro__:
        if cls is keras.layers.Layer:
            break
        if "__init__" in vars(cls):
            names += [n for n in inspect.signature(cls.__init__).parameters if n not in common and n not in names]
    return sorted(names)


__all__ = ["FUSIONS", "ITEM_TOWER_FUSIONS", "AttentionPoolingFusion", "BilinearFusion", "ConcatFusion",
           "FusionLayer", "GatedFusion", "ModalityAttentionFusion", "MultilinearFusion", "QueryCrossAttentionFusion",
           "WeightedSumFusion", "fusion_options", "make_fusion", "masked_softmax"]
