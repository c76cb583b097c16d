"""A run directory is used by one run at a time, and must be writable before training starts.

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
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"


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
