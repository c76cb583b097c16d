"""Versioned, atomic SavedModel writes in the layout TF Serving watches."""
from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf

from tfmmrec.export.versioning import existing_versions, next_version, save_versioned


class Doubler(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def double(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": 2 * x}


class Broken(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def fail(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        raise RuntimeError("tracing fails")


def test_versions_count_up_and_are_never_overwritten(tmp_path: Path) -> None:
    m = Doubler()
    first = save_versioned(m, tmp_path, "model", {"serving_default": m.double})
    second = save_versioned(m, tmp_path, "model", {"serving_default": m.double})
    assert (first.name, second.name) == ("1", "2")
    assert existing_versions(tmp_path / "model") == [1, 2]
    assert next_version(tmp_path / "model") == 3
    with pytest.raises(FileExistsError, match="never overwrite"):
        save_versioned(m, tmp_path, "model", {"serving_default": m.double}, version=1)
    loaded = tf.saved_model.load(str(second))
    assert loaded.signatures["serving_default"](x=tf.constant([1.5]))["y"].numpy().tolist() == [3.0]


def test_a_failed_export_leaves_nothing_behind(tmp_path: Path) -> None:
    m = Broken()
    with pytest.raises(RuntimeError):
        save_versioned(m, tmp_path, "model", {"serving_default": m.fail})
    assert list((tmp_path / "model").iterdir()) == []
