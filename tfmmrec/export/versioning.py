"""Write SavedModels into ``BASE/NAME/<integer version>/`` the way TF Serving expects.

TF Serving watches ``BASE/NAME`` and loads the highest integer-named directory. A half-written
version would be picked up and fail, so a model is written to a hidden temporary directory
(which TF Serving ignores: its name is not an integer) and renamed into place in one step.
An existing version is never overwritten.

Exports running at the same time into one model directory (two processes, or threads) each get
their own version: the number is claimed by that rename, which fails when the directory exists
(a version directory is never empty); the loser takes the next number. The temporary directory
is unique per export (pid + random token), so concurrent saves never share it.
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import tensorflow as tf


class ExportError(RuntimeError):
    """An export that could not be written (the run that asked for it keeps its results)."""


def existing_versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def next_version(model_dir: Path) -> int:
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def _remove_stale_tmp(model_dir: Path) -> None:
    """Delete temporary directories left by exports whose process died (killed mid-save).
    Their names end in the writing process's id: ``.tmp-<token>-<pid>``."""
    for path in model_dir.glob(".tmp-*-*"):
        try:
            pid = int(path.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


def save_versioned(module: tf.Module, base: str | Path, name: str, signatures: dict[str, Any],
                   version: int | None = None, options: tf.saved_model.SaveOptions | None = None,
                   assets_extra: dict[str, bytes] | None = None) -> Path:
    """Save ``module`` as ``base/name/version`` atomically; returns the version directory.

    Args:
      assets_extra: files written under ``assets.extra/`` before the rename (e.g. TF Serving's
        ``tf_serving_warmup_requests``), so they are there when the version appears.
    """
    model_dir = Path(base) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(model_dir)
    if version is not None and (model_dir / str(version)).exists():
        raise FileExistsError(f"{model_dir / str(version)} already exists; exports never overwrite a version")
    tmp = model_dir / f".tmp-{secrets.token_hex(4)}-{os.getpid()}"
    logger = tf.get_logger()
    level = logger.level
    # Keras warns that wrapper models (e.g. TFRS BruteForce) have no get_config; a SavedModel
    # export does not need one, so the warning would only be noise here.
    logger.setLevel("ERROR")
    try:
        tf.saved_model.save(module, str(tmp), signatures=signatures, options=options)
        for rel, data in (assets_extra or {}).items():
            target = tmp / "assets.extra" / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return _claim_version(tmp, model_dir, version)
    finally:
        logger.setLevel(level)
        shutil.rmtree(tmp, ignore_errors=True)


def _claim_version(tmp: Path, model_dir: Path, version: int | None) -> Path:
    """Rename the finished ``tmp`` to the given version, or to the next free one. ``os.rename`` of
    a directory onto an existing non-empty one fails (ENOTEMPTY/EEXIST): that is the claim."""
    candidate = version if version is not None else next_version(model_dir)
    while True:
        final = model_dir / str(candidate)
        try:
            if final.exists():  # also refuses an empty directory, which rename would replace
                raise FileExistsError(errno.EEXIST, "exists", str(final))
            os.rename(tmp, final)
            return final
        except OSError as err:
            if err.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
            if version is not None:
                raise FileExistsError(f"{final} already exists; exports never overwrite a version") from None
            candidate = max(candidate + 1, next_version(model_dir))
