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


KILLED_MID_EXPORT = """
import importlib.util, sys, time
from pathlib import Path
import tensorflow as tf
spec = importlib.util.spec_from_file_location("versioning", sys.argv[3])  # by path: only TF gets imported
versioning = importlib.util.module_from_spec(spec)
spec.loader.exec_module(versioning)
save_versioned = versioning.save_versioned

class Doubler(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def double(self, x):
        return {"y": 2 * x}

class SlowExtras(dict):
    # Called after the SavedModel is written and before the rename: the export's last step.
    def items(self):
        Path(sys.argv[2]).write_text("saved, not yet renamed")
        time.sleep(120)
        return super().items()

m = Doubler()
save_versioned(m, sys.argv[1], "model", {"serving_default": m.double}, assets_extra=SlowExtras(a=b"x"))
"""


def test_an_export_killed_before_its_rename_leaves_no_version(tmp_path: Path) -> None:
    """SIGKILL a real export process after its SavedModel is fully written but before the rename:
    TF Serving sees versions only as integer-named directories, and there is none."""
    import os
    import signal
    import subprocess
    import sys
    import time

    marker = tmp_path / "marker"
    module = Path(__file__).parents[2] / "tfmmrec" / "export" / "versioning.py"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_MID_EXPORT, str(tmp_path), str(marker), str(module)],
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert marker.exists(), "the export subprocess never reached its last step"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    leftovers = [p.name for p in (tmp_path / "model").iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-")  # hidden, not an integer
    assert (tmp_path / "model" / leftovers[0] / "saved_model.pb").is_file()  # complete, yet invisible
    assert existing_versions(tmp_path / "model") == []
    # The next export takes version 1 and clears the dead process's leftovers.
    m = Doubler()
    assert save_versioned(m, tmp_path, "model", {"serving_default": m.double}).name == "1"
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["1"]


CONCURRENT_EXPORT = """
import importlib.util, sys, time
from pathlib import Path
import tensorflow as tf
spec = importlib.util.spec_from_file_location("versioning", sys.argv[4])
versioning = importlib.util.module_from_spec(spec)
spec.loader.exec_module(versioning)

class Doubler(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def double(self, x):
        return {"y": 2 * x}

class Barrier(dict):
    # Runs after the SavedModel is written, just before the version is claimed: both exports
    # wait here for each other, so both claim at the same moment.
    def items(self):
        Path(sys.argv[2]).write_text("ready")
        deadline = time.monotonic() + 60
        while not Path(sys.argv[3]).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return super().items()

m = Doubler()
print(versioning.save_versioned(m, sys.argv[1], "model", {"serving_default": m.double}, assets_extra=Barrier(a=b"x")))
"""


def test_two_processes_exporting_at_once_get_their_own_versions(tmp_path: Path) -> None:
    """Two real export processes reach the version claim together: each gets its own version
    (1 and 2), neither fails, and both versions are complete SavedModels."""
    import os
    import subprocess
    import sys

    module = Path(__file__).parents[2] / "tfmmrec" / "export" / "versioning.py"
    a, b = tmp_path / "a", tmp_path / "b"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_EXPORT, str(tmp_path), str(mine), str(other),
                               str(module)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for mine, other in ((a, b), (b, a))]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    written = sorted(Path(out.strip()).name for out, _ in outs)
    assert written == ["1", "2"]
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["1", "2"]  # no temporary left
    for v in written:
        loaded = tf.saved_model.load(str(tmp_path / "model" / v))
        assert loaded.signatures["serving_default"](x=tf.constant([2.0]))["y"].numpy().tolist() == [4.0]
        assert (tmp_path / "model" / v / "assets.extra" / "a").read_bytes() == b"x"


def test_threads_exporting_at_once_get_distinct_versions(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    m = Doubler()
    m.double.get_concrete_function()  # trace once, up front
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: save_versioned(m, tmp_path, "model", {"serving_default": m.double}),
                              range(4)))
    assert sorted(p.name for p in paths) == ["1", "2", "3", "4"]
    assert existing_versions(tmp_path / "model") == [1, 2, 3, 4]
    assert not list((tmp_path / "model").glob(".tmp-*"))


def test_an_explicit_version_that_appears_meanwhile_is_refused_not_replaced(tmp_path: Path) -> None:
    from tfmmrec.export.versioning import _claim_version

    (tmp_path / "model" / "3").mkdir(parents=True)  # even an empty one: rename would replace it
    tmp = tmp_path / "model" / ".tmp-x-1"
    (tmp / "variables").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="never overwrite"):
        _claim_version(tmp, tmp_path / "model", 3)
    assert _claim_version(tmp, tmp_path / "model", None).name == "4"
