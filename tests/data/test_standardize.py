"""Z-scoring: statistics from the present rows only, absent rows exactly zero."""
from __future__ import annotations

import numpy as np
import pytest

from tfmmrec.data.standardize import Standardizer, zscore


def test_statistics_come_from_present_rows_and_absent_rows_are_zero() -> None:
    values = np.array([[1.0, 10.0], [3.0, 10.0], [1000.0, -5.0]], np.float32)
    present = np.array([True, True, False])
    fitted = Standardizer.fit(values, present)
    np.testing.assert_allclose(fitted.mean, [2.0, 10.0])
    np.testing.assert_allclose(fitted.std, [1.0, 0.0], atol=2e-6)  # + epsilon: a constant column stays finite
    out = zscore(values, present)
    np.testing.assert_allclose(out[:2, 0], [-1.0, 1.0], rtol=1e-5)
    assert out[:2, 1].tolist() == [0.0, 0.0]  # constant dimension: (x - mean) / eps = 0
    assert out[2].tolist() == [0.0, 0.0]  # the outlier row is absent: 0, and it did not move the mean
    assert out.dtype == np.float32


def test_new_rows_are_scaled_with_the_fitted_statistics() -> None:
    fitted = Standardizer.fit(np.array([[0.0], [2.0]]), np.array([True, True]))
    assert fitted.apply(np.array([[4.0]]), np.array([True]))[0, 0] == pytest.approx(3.0, rel=1e-5)


def test_nothing_present_is_the_identity() -> None:
    fitted = Standardizer.fit(np.ones((3, 2)), np.zeros(3, bool))
    assert fitted.mean.tolist() == [0.0, 0.0] and fitted.std.tolist() == [1.0, 1.0]
    assert not zscore(np.ones((3, 2)), np.zeros(3, bool)).any()
