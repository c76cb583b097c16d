"""tfmmrec needs Keras 2 (tf_keras); importing it after tf.keras became Keras 3 says how to fix it."""
from __future__ import annotations

import os
import subprocess
import sys


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)


def test_importing_tensorflow_first_is_fine_if_tf_keras_is_untouched() -> None:
    proc = run_python("import tensorflow as tf\nimport tfmmrec\nprint(tf.keras.__name__)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("tf_keras.api._v2.keras")


def test_keras3_already_loaded_gives_the_fix() -> None:
    proc = run_python("import tensorflow as tf\ntf.keras.layers.Dense(1)\nimport tfmmrec")
    assert proc.returncode != 0
    assert "tfmmrec needs Keras 2" in proc.stderr and "TF_USE_LEGACY_KERAS=1" in proc.stderr
