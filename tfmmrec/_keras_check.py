"""Fail early, with the fix, when tf.keras is (or will be) bound to Keras 3 instead of tf_keras."""
from __future__ import annotations

import os
import sys

# The values TensorFlow reads as "use tf_keras" (tensorflow/__init__.py, util/lazy_loader.py).
LEGACY_KERAS_VALUES = ("true", "True", "1")


def check_keras_version() -> None:
    """Check what ``tf.keras`` is, without importing TensorFlow when nothing has imported it yet:
    then TF_USE_LEGACY_KERAS alone decides what tf.keras will be once TensorFlow loads."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        value = os.environ.get("TF_USE_LEGACY_KERAS")
        if value not in LEGACY_KERAS_VALUES:
            raise ImportError(
                f"TF_USE_LEGACY_KERAS={value!r} makes tf.keras Keras 3, but tfmmrec needs Keras 2 (tf_keras) for "
                "TFRS and TF-Hub: set TF_USE_LEGACY_KERAS=1 (or unset it; tfmmrec then sets it).")
        return
    name = getattr(tf.keras, "__name__", "")
    if not name.startswith("tf_keras"):
        raise ImportError(
            f"tf.keras is {name!r} (Keras 3), but tfmmrec needs Keras 2 (tf_keras) for TFRS and TF-Hub. "
            "Something used tf.keras before tfmmrec was imported: set TF_USE_LEGACY_KERAS=1 at the very "
            "top of your program (or in the shell), or import tfmmrec first.")
