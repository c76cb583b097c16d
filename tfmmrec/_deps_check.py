"""Import-time guards for the two ways a user's environment breaks tfmmrec's dependencies.

- **scann** is built for exactly one TensorFlow minor, and TFRS imports it whenever it is
  installed: a scann built for another TF makes ``import tensorflow_recommenders`` itself fail
  (``_scann_ops.so: undefined symbol ...``). scann declares its TF in its metadata, so a mismatched
  one is hidden from TFRS before TFRS is imported (``sys.modules["scann"] = None`` makes its
  ``import scann`` an ImportError, which TFRS handles); a matching one that still fails to load is
  hidden the same way. Either way tfmmrec imports, warns once with the fix, and only the opt-in
  ScaNN index is unavailable (``require_scann`` says why when it is asked for). Importing tfmmrec
  imports no TensorFlow for this: the TF version comes from metadata, and a scann built for this TF
  is tried when something first imports it (TFRS does), by a finder that hides it if it fails.
- **pkg_resources**: tensorflow_hub 0.16.1 imports it and setuptools 82 removed it
  (tensorflow/hub#934). tfmmrec requires ``setuptools<82``; if something upgraded setuptools
  since, the import stops with that fix instead of a bare ModuleNotFoundError from inside hub.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import importlib.util
import re
import sys
import warnings
from typing import Any

# scann release -> the TF minor it is built for (from its metadata; listed for the messages).
SCANN_BUILDS = "scann 1.3.4: TF 2.17, 1.3.5: 2.18, 1.4.0: 2.19, 1.4.1/1.4.2: 2.20, none yet for 2.21"
_SCANN_FIX = (f"Install the scann built for this TensorFlow ({SCANN_BUILDS}; `pip install 'tfmmrec[scann]'` "
              "picks it) or `pip uninstall scann`.")

scann_problem: str | None = None  # why the installed scann is hidden, if it is


def check_pkg_resources() -> None:
    """Fail with the fix when ``pkg_resources`` (needed by tensorflow_hub) is gone."""
    try:
        found = importlib.util.find_spec("pkg_resources") is not None
    except ValueError:  # in sys.modules without a spec
        found = "pkg_resources" in sys.modules and sys.modules["pkg_resources"] is not None
    if not found:
        raise ImportError(
            "tensorflow_hub 0.16.1 imports pkg_resources, which setuptools 82 removed (tensorflow/hub#934), "
            "and it is not importable here: pip install 'setuptools<82' (tfmmrec's requirements ask for it; "
            "something upgraded setuptools since).")


def scann_tf_minor(requirements: list[str]) -> str | None:
    """The TF minor a scann distribution is built for, from its ``Requires-Dist`` entries."""
    for req in requirements:
        match = re.match(r"\s*tensorflow\s*\(?\s*~=\s*(\d+\.\d+)", req)
        if match:
            return match.group(1)
    return None


def guard_scann() -> str | None:
    """Hide an installed scann that cannot work with this TensorFlow; return why (or None).

    A scann built for another TF minor is hidden now. One built for this TF (or when the TF version
    is unknown without importing it) is checked by ``_ScannCheck`` when it is first imported."""
    try:
        version = importlib.metadata.version("scann")
    except importlib.metadata.PackageNotFoundError:
        return None
    if "scann" in sys.modules or any(isinstance(f, _ScannCheck) for f in sys.meta_path):
        return scann_problem  # already imported (nothing left to guard) or already guarded
    problem = _build_mismatch(version, _tensorflow_version())
    if problem is not None:
        _hide_scann(problem)
        warnings.warn(_warning(problem), RuntimeWarning, stacklevel=2)
        return problem
    sys.meta_path.insert(0, _ScannCheck(version))
    return None


def _tensorflow_version() -> str | None:
    """TensorFlow's version without importing it (None if no known distribution provides it)."""
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        return tf.__version__
    for dist in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _build_mismatch(version: str, tf_version: str | None) -> str | None:
    built_for = scann_tf_minor(importlib.metadata.requires("scann") or [])
    if tf_version is None or built_for is None or built_for == ".".join(tf_version.split(".")[:2]):
        return None
    return f"scann {version} is built for TensorFlow {built_for}, but TensorFlow here is {tf_version}"


def _hide_scann(problem: str) -> None:
    global scann_problem
    for name in [m for m in sys.modules if m == "scann" or m.startswith("scann.")]:
        del sys.modules[name]
    sys.modules["scann"] = None  # type: ignore[assignment]  # TFRS's `from scann import ...` -> ImportError
    scann_problem = problem


def _warning(problem: str) -> str:
    return f"{problem}: it is ignored, so TFRS and tfmmrec work without the ScaNN index. {_SCANN_FIX}"


class _ScannCheck(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Loads scann on its first import as usual, then its compiled ops (what TFRS imports); if
    either fails, that import raises ImportError instead (which TFRS handles) and scann is hidden."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.loader: importlib.abc.Loader | None = None

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "scann":
            return None
        if scann_problem is not None:
            raise ImportError(f"scann is hidden: {scann_problem}", name=name)
        for finder in sys.meta_path:
            spec = None if finder is self else finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                self.loader, spec.loader = spec.loader, self
                return spec
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self.loader.create_module(spec) if self.loader else None

    def exec_module(self, module: Any) -> None:
        import tensorflow as tf  # scann needs it anyway

        problem = _build_mismatch(self.version, tf.__version__)
        if problem is None:
            try:
                assert self.loader is not None
                self.loader.exec_module(module)
                importlib.import_module("scann.scann_ops")  # what TFRS imports; registers the Scann ops
            except Exception as e:  # a broken build raises NotFoundError/ImportError from its .so
                problem = (f"scann {self.version} does not load with TensorFlow {tf.__version__} "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})")
        if problem is not None:
            _hide_scann(problem)
            warnings.warn(_warning(problem), RuntimeWarning, stacklevel=2)
            raise ImportError(problem, name="scann")


def require_scann() -> None:
    """Raise a clear error when the ScaNN index is asked for but scann is missing or hidden."""
    if scann_problem is None and importlib.util.find_spec("scann") is not None:
        try:  # runs the check of _ScannCheck if nothing has imported scann yet
            importlib.import_module("scann")
        except ImportError:
            pass
    if scann_problem is not None:
        raise RuntimeError(f"export.index='scann' needs a working scann: {scann_problem}. {_SCANN_FIX}")
    if importlib.util.find_spec("scann") is None:
        raise RuntimeError("export.index='scann' needs the scann package, which is not installed: "
                           f"pip install 'tfmmrec[scann]' ({SCANN_BUILDS}).")
