"""tfmmrec imports in the environments users have: each installed extra works, a scann built for
another TensorFlow does not break the import, and a setuptools without pkg_resources says the fix."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tensorflow as tf
from packaging.requirements import Requirement

TF_MINOR = ".".join(tf.__version__.split(".")[:2])

# What each extra must make work, checked in a fresh process after `import tfmmrec`.
EXTRA_CHECKS = {
    "test": "import scipy.signal, nbclient, nbformat, pytest",
    "audio": textwrap.dedent("""
        import numpy as np, soundfile, io
        from tfmmrec.media.compressed import available_decoder, to_wav_bytes
        from tfmmrec.media.audio import decode_wav
        assert available_decoder() == "soundfile"
        buf = io.BytesIO(); soundfile.write(buf, np.zeros((800, 2)), 8000, format="FLAC")
        assert decode_wav(to_wav_bytes(buf.getvalue()), 0.1).shape == (1600,)"""),
    "io": textwrap.dedent("""
        import tensorflow as tf, tensorflow_io as tfio
        from tfmmrec.media.compressed import tfio_loads
        tfio.audio.resample(tf.zeros([8, 1]), rate_in=8000, rate_out=16000)  # needs its compiled ops
        assert tfio_loads()"""),
    "scann": textwrap.dedent("""
        from tfmmrec._deps_check import require_scann
        require_scann()
        import tensorflow_recommenders as tfrs
        assert tfrs.layers.factorized_top_k._HAVE_SCANN"""),
}


def run_python(code: str, extra_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-W", "error::RuntimeWarning:tfmmrec", "-c", code],
                          capture_output=True, text=True, timeout=300, env=env)


def installed_extras() -> set[str]:
    """The extras of tfmmrec whose every requirement is installed at a matching version."""
    found = set()
    requirements = [Requirement(r) for r in importlib.metadata.requires("tfmmrec") or []]
    for extra in EXTRA_CHECKS:
        reqs = [r for r in requirements if r.marker is not None and r.marker.evaluate({"extra": extra})]
        try:
            if reqs and all(r.specifier.contains(importlib.metadata.version(r.name), prereleases=True) for r in reqs):
                found.add(extra)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


@pytest.mark.parametrize("extra", sorted(EXTRA_CHECKS))
def test_each_installed_extra_imports_with_tfmmrec_and_works(extra: str) -> None:
    """CI installs [test] on the newest tested set and [test,audio,io,scann] on the oldest: each of
    those combinations is checked where it is installed (and skipped where it is not)."""
    if extra not in installed_extras():
        pytest.skip(f"tfmmrec[{extra}] is not installed here")
    proc = run_python("import tfmmrec\n" + EXTRA_CHECKS[extra])
    assert proc.returncode == 0, proc.stderr[-3000:]


def fake_scann(root: Path, built_for: str, error: str) -> Path:
    """A scann distribution whose compiled ops fail to load, as a scann built for another TF does
    (``_scann_ops.so: undefined symbol ...``); its metadata declares the TF it was built for."""
    (root / "scann").mkdir(parents=True)
    (root / "scann" / "__init__.py").write_text(
        f"open({str(root / 'imported')!r}, 'w').close()\nraise ImportError({error!r})\n")
    info = root / "scann-1.4.2.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: scann\nVersion: 1.4.2\n"
                                   f"Requires-Dist: tensorflow~={built_for}.0; extra == \"tf\"\n")
    return root


CHECK_TFRS = textwrap.dedent("""
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import tfmmrec
    import tensorflow_recommenders as tfrs
    print("HAVE_SCANN", tfrs.layers.factorized_top_k._HAVE_SCANN)
    print("WARNINGS", " | ".join(str(w.message) for w in caught if "scann" in str(w.message)))
    try:
        tfmmrec._deps_check.require_scann()
    except RuntimeError as e:
        print("REQUIRE", e)
""")


def test_a_scann_built_for_another_tensorflow_is_never_loaded_and_does_not_break_the_import(tmp_path: Path) -> None:
    other = "2.20" if TF_MINOR != "2.20" else "2.19"
    root = fake_scann(tmp_path / "site", other, "undefined symbol: _ZN4absl12lts_2025raw_log_internal")
    proc = run_python(CHECK_TFRS, root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HAVE_SCANN False" in proc.stdout
    assert f"scann 1.4.2 is built for TensorFlow {other}, but TensorFlow here is {tf.__version__}" in proc.stdout
    assert "tfmmrec[scann]" in proc.stdout and "pip uninstall scann" in proc.stdout
    assert "REQUIRE export.index='scann' needs a working scann" in proc.stdout
    assert not (root / "imported").exists()  # its compiled ops were never loaded


def test_a_scann_that_fails_to_load_is_hidden_with_its_error(tmp_path: Path) -> None:
    root = fake_scann(tmp_path / "site", TF_MINOR, "_scann_ops.so: undefined symbol: raw_log_internal")
    proc = run_python(CHECK_TFRS, root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HAVE_SCANN False" in proc.stdout
    assert "does not load with TensorFlow" in proc.stdout and "undefined symbol" in proc.stdout


def test_setuptools_without_pkg_resources_stops_the_import_with_the_fix() -> None:
    proc = run_python("import sys\nsys.modules['pkg_resources'] = None  # as after setuptools>=82\nimport tfmmrec")
    assert proc.returncode != 0
    assert "setuptools 82 removed" in proc.stderr and "pip install 'setuptools<82'" in proc.stderr
