"""Where an encoder's SavedModel lives: a URL, a local directory, or the TF-Hub cache.

``tensorflow_hub`` downloads a URL handle into ``$TFHUB_CACHE_DIR/<sha1(handle)>`` and reuses
it from there; offline, a handle that is not in the cache fails deep inside urllib with a
message that names neither the model nor the fix. ``resolve_handle`` looks in the cache
first (so a pre-downloaded model loads without any network call), and turns every failure
into one ``EncoderUnavailable`` that names the handle and says how to pre-download it.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from tfmmrec.config import ConfigError


class EncoderUnavailable(ConfigError):
    """An encoder's SavedModel cannot be found locally and cannot be downloaded.

    A ``ConfigError``: the run names a model this machine does not have, and the CLI reports it
    as one clear line (plus the pre-download recipe) instead of a traceback."""


def is_url(handle: str) -> bool:
    return handle.startswith(("http://", "https://", "gs://"))


def tfhub_cache_dir() -> Path:
    """The cache ``tensorflow_hub`` uses: ``$TFHUB_CACHE_DIR``, else ``<tmp>/tfhub_modules``."""
    return Path(os.environ.get("TFHUB_CACHE_DIR") or Path(tempfile.gettempdir()) / "tfhub_modules")


def cached_path(handle: str) -> Path:
    """Where ``tensorflow_hub`` keeps (or would keep) the download of a URL handle."""
    return tfhub_cache_dir() / hashlib.sha1(handle.encode("utf8")).hexdigest()


def _is_saved_model(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


def predownload_hint(handle: str) -> str:
    return (f"Pre-download it on a machine with network access:\n"
            f"  TFHUB_CACHE_DIR=/path/to/cache python -c \"import tensorflow_hub as hub; hub.resolve('{handle}')\"\n"
            f"then copy /path/to/cache to this machine and set TFHUB_CACHE_DIR to it; or download the model "
            f"archive from its Kaggle Models page, extract it, and use the directory as the handle "
            f"(config: encoders: {{kind: NAME@/path/to/dir}}).")


def resolve_handle(handle: str, *, name: str = "") -> str:
    """A local SavedModel directory for ``handle`` (downloading a URL only if it is not cached).

    Raises:
      EncoderUnavailable: the directory does not hold a SavedModel, or the URL is neither cached
        nor downloadable (the message names the handle, the cache path and the fix).
    """
    label = f"encoder {name!r}" if name else "encoder"
    if not is_url(handle):
        path = Path(handle).expanduser()
        if _is_saved_model(path):
            return str(path)
        raise EncoderUnavailable(f"{label}: {path} is not a SavedModel directory (no saved_model.pb)")
    cached = cached_path(handle)
    if _is_saved_model(cached):
        return str(cached)
    import tensorflow_hub as hub

    try:
        return str(hub.resolve(handle))
    except Exception as err:  # urllib / HTTP / tarfile errors: all mean "not available here"
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        raise EncoderUnavailable(
            f"{label}: cannot load {handle}: it is not in the TF-Hub cache ({cached}) and downloading it "
            f"failed ({reason}).\n{predownload_hint(handle)}") from None
