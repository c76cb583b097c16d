"""Per-dimension z-scoring, fitted on the rows that have a value.

One implementation for every place features are standardised: frozen encoder outputs and numeric
fields in the models' item table (``tfmmrec.models.features``), the same statistics baked into an
export's raw-content path (``tfmmrec.export.content``), and the inputs of cross-modal alignment
(``tfmmrec.encoders.align``). 4096-d CNN features and 64-d text features then enter a fusion MLP
on one scale, and an absent value is exactly 0 (the mean) rather than a number on another scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPSILON = 1e-6  # added to every std: a constant dimension is divided by ~0, never by 0


@dataclass(frozen=True)
class Standardizer:
    """``(x - mean) / std`` per dimension (``[dim]`` each, float32)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, present: np.ndarray) -> Standardizer:
        """Statistics over the rows where ``present`` (``[rows]`` bool); none present: the identity."""
        values = np.asarray(values, np.float32)
        if not present.any():
            return cls(np.zeros(values.shape[1], np.float32), np.ones(values.shape[1], np.float32))
        return cls(values[present].mean(axis=0).astype(np.float32),
                   (values[present].std(axis=0) + EPSILON).astype(np.float32))

    def apply(self, values: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Standardised ``values`` (float32), rows that are not ``present`` set to 0."""
        scaled = (np.asarray(values, np.float32) - self.mean) / self.std
        return np.where(present[:, None], scaled, 0.0).astype(np.float32)


def zscore(values: np.ndarray, present: np.ndarray) -> np.ndarray:
    """``values`` standardised with statistics of their own present rows (absent rows 0)."""
    return Standardizer.fit(values, present).apply(values, present)
