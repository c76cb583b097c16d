"""Fail early, with the fix, when tf.keras is bound to Keras 3 instead of tf_keras."""
from __future__ import annotations


def check_keras_version() -> None:
    import tensorflow as tf

    name = getattr(tf.keras, "__name__", "")
    if not name.startswith("tf_keras"):
        raise ImportError(
            f"tf.keras is {name!r} (Keras 3), but tfmmrec needs Keras 2 (tf_keras) for TFRS and TF-Hub. "
            "Something used tf.keras before tfmmrec was imported: set TF_USE_LEGACY_KERAS=1 at the very "
            "top of your program (or in the shell), or import tfmmrec first.")
