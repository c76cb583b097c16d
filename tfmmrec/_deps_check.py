"""Import-time guards for the two ways a user's environment breaks tfmmrec's dependencies.

- **scann** is built for exactly one TensorFlow minor, and TFRS imports it whenever it is
  installed: a scann built for another TF makes ``import tensorflow_recommenders`` itself fail
  (``_scann_ops.so: undefined symbol ...``). scann declares its TF in its metadata, so a mismatched
  one is hidden from TFRS before TFRS is imported (``sys.modules["scann"] = None`` makes its
  ``import scann`` an ImportError, which TFRS handles); a matching one that still fails to load is
  hidden the same way. Either way tfmmrec imports, warns once with the fix, and only the opt-in
  ScaNN index is unavailable (``require_scann`` says why when it is asked for).
- **pkg_resources**: tensorflow_hub 0.16.1 imports it and setuptools 82 removed it
  (tensorflow/hub#934). tfmmrec requires ``setuptools<82``; if something upgraded setuptools
  since, the import stops with that fix instead of a bare ModuleNotFoundError from inside hub.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
import warnings

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
    """Hide an installed scann that cannot work with this TensorFlow; return why (or None)."""
    global scann_problem
    try:
        version = importlib.metadata.version("scann")
    except importlib.metadata.PackageNotFoundError:
        return None
    import tensorflow as tf

    tf_minor = ".".join(tf.__version__.split(".")[:2])
    built_for = scann_tf_minor(importlib.metadata.requires("scann") or [])
    problem = None
    if built_for is not None and built_for != tf_minor:
        problem = f"scann {version} is built for TensorFlow {built_for}, but TensorFlow here is {tf.__version__}"
    else:
        try:
            from scann import scann_ops  # noqa: F401  what TFRS imports; registers the Scann ops
        except Exception as e:  # a broken build raises NotFoundError/ImportError from its .so
            problem = (f"scann {version} does not load with TensorFlow {tf.__version__} "
                       f"({type(e).__name__}: {str(e).splitlines()[0][:200]})")
    if problem is None:
        return None
    for name in [m for m in sys.modules if m == "scann" or m.startswith("scann.")]:
        del sys.modules[name]
    sys.modules["scann"] = None  # type: ignore[assignment]  # TFRS's `from scann import ...` -> ImportError
    scann_problem = problem
    warnings.warn(f"{problem}: it is ignored, so TFRS and tfmmrec work without the ScaNN index. {_SCANN_FIX}",
                  RuntimeWarning, stacklevel=2)
    return problem


def require_scann() -> None:
    """Raise a clear error when the ScaNN index is asked for but scann is missing or hidden."""
    if scann_problem is not None:
        raise RuntimeError(f"export_index='scann' needs a working scann: {scann_problem}. {_SCANN_FIX}")
    if importlib.util.find_spec("scann") is None:
        raise RuntimeError("export_index='scann' needs the scann package, which is not installed: "
                           f"pip install 'tfmmrec[scann]' ({SCANN_BUILDS}).")
