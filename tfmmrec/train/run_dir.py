"""A run directory: what a run leaves there, and the rules for using one.

Layout: ``config.yaml`` (the run's config), ``run.json`` (:func:`write_run_state`: the dataset and
the models trained), ``metrics.json`` (:func:`write_json`), ``weights/NAME/ckpt`` (each model's
weights, :func:`save_run_weights`, read back by :func:`restore_weights`), ``backup/`` (resumable
training state, :func:`run_backups`) and TensorBoard logs (``tfmmrec.train.tensorboard``).

A run directory is used by one run at a time, and must be writable before training starts.

Two ``tfmmrec train`` into one ``--out`` would share its backups (``RUN_DIR/backup``) and
overwrite each other's weights and metrics: :func:`run_dir_lock` makes the second one stop at
once with an error naming the lock file and the process holding it. The lock is an
``fcntl.flock`` on ``RUN_DIR/.lock``, so the operating system releases it when its process
dies, however it dies (SIGKILL included): a stale lock file left by a dead run is simply taken
over, and a rerun after a kill resumes.

:func:`check_writable` probes directories by creating a file in them: a run whose results or
backups could not be written fails before it trains, not after.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tfmmrec.config import RunConfig
from tfmmrec.data.interactions import EncodedInteractions
from tfmmrec.data.manifest import DatasetError

LOCK_FILE = ".lock"
RUN_STATE = "run.json"


class RunDirError(RuntimeError):
    """A run directory in use by another run, or a directory a run must write that it cannot."""


@contextlib.contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[Path]:
    """Hold ``RUN_DIR/.lock`` (exclusive, non-blocking) for the ``with`` block.

    Raises:
      RunDirError: another live process (or another run in this process) holds it.
    """
    run_dir = Path(run_dir)
    check_writable(run=run_dir)
    path = run_dir / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RunDirError(f"{run_dir} is in use by another tfmmrec run (pid {holder} holds {path}); "
                              "wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with a new run)


def check_writable(**directories: str | Path | None) -> None:
    """Create each directory (if needed) and a file in it; ``name=path`` pairs name them in the
    error (``run``, ``backup``, ``cache`` ...). ``None`` entries are skipped.

    Raises:
      RunDirError: naming the first directory that cannot be written, and why.
    """
    for what, directory in directories.items():
        if directory is None:
            continue
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-probe-"):
                pass
        except OSError as err:
            raise RunDirError(f"{what} directory {directory} is not writable ({err.strerror or err}); "
                              "nothing was trained") from None


def _json_safe(value: Any) -> Any:
    """NaN (a metric with no users, e.g. no cold items) becomes null: metrics.json stays strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path: Path, data: Any) -> None:
    """``data`` as strict JSON (NaN -> null)."""
    path.write_text(json.dumps(_json_safe(data), indent=2, allow_nan=False))


def save_run_weights(cfg: RunConfig, run_dir: str | Path, name: str, model: Any) -> None:
    """``RUN_DIR/weights/NAME/ckpt`` (TensorFlow checkpoint format: subclassed models)."""
    if cfg.train.save_weights:
        model.save_weights(str(Path(run_dir) / "weights" / name / "ckpt"))


def write_run_state(run_dir: str | Path, dataset_dir: str | Path, retrieval: list[str], ranking: bool) -> None:
    """What rebuilding a run's models needs besides ``config.yaml`` and the weights."""
    write_json(Path(run_dir) / RUN_STATE, {"dataset_dir": str(Path(dataset_dir).resolve()),
                                           "retrieval": retrieval, "ranking": ranking})


def read_run_state(run_dir: str | Path) -> dict[str, Any]:
    """``run.json`` of a trained run: ``dataset_dir``, ``retrieval`` (the variants), ``ranking``."""
    state_path = Path(run_dir) / RUN_STATE
    if not state_path.is_file():
        raise FileNotFoundError(f"{state_path}: not a run directory (written by `tfmmrec train` / tfmmrec.run)")
    try:
        state = json.loads(state_path.read_text())
        state["dataset_dir"], state["retrieval"], state["ranking"]  # noqa: B018  (keys a run directory has)
    except (ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{state_path}: not a run state written by tfmmrec ({err})") from None
    return state


def restore_weights(model: Any, run_dir: str | Path, name: str, build: Callable[[], Any]) -> None:
    """Load ``RUN_DIR/weights/NAME/ckpt`` into ``model`` (``build()`` creates its variables) and
    check that every variable of the model got a value."""
    weights = Path(run_dir) / "weights" / name / "ckpt"
    if not Path(str(weights) + ".index").is_file():
        raise FileNotFoundError(f"{weights}.index: no saved weights (was the run trained with "
                                "train.save_weights=false?)")
    status = model.load_weights(str(weights))
    build()  # creates the variables, which the checkpoint restores on creation
    status.assert_existing_objects_matched().expect_partial()  # the optimizer state is not needed


def run_backups(run_dir: Path, cfg: RunConfig, data: EncodedInteractions) -> Path | None:
    """Where this run's training backups go (None: backups off); see ``tfmmrec.train.resume``."""
    from tfmmrec.train.resume import backup_root  # TensorFlow: not at import, the CLI's error path imports this

    if cfg.train.backup_every_steps <= 0:
        return None
    # Resumable under another strategy: the backup is keyed on the config without train.distribute.
    keyed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, distribute="auto", backup_every_steps=0))
    fingerprint = f"{data.num_users} {data.num_items} {len(data.train)} {int(data.train.item.sum())} " \
                  f"{int(data.train.user.astype(np.int64) @ data.train.item.astype(np.int64))}"
    return backup_root(run_dir, keyed.to_yaml(), fingerprint)


def backup_args(backups: Path | None, name: str, cfg: RunConfig) -> dict[str, Any]:
    """``train_*``'s backup arguments for model ``name`` of a run (none when backups are off)."""
    return {} if backups is None else {"backup_dir": backups / name, "backup_every_steps": cfg.train.backup_every_steps}
