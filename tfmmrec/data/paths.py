"""The one gate every catalog file passes: inside the dataset root, a regular file, of bounded size.

Catalogs come from people who did not make them (scraped shops, partner feeds, uploads), so a
path in a manifest or a table is untrusted: ``../outside/x.png``, an absolute path, a symlink
leading out of the root, a named pipe or ``/dev/zero`` (reading either never ends) or a
multi-gigabyte file must never be read. Each path is resolved once (symlinks included) against
the resolved root, ``os.stat``-ed *before* anything opens it (a fifo is never opened), and read
through :func:`read_bounded`, which opens without following a last-component symlink and in
non-blocking mode, re-checks the open file and reads at most ``max_bytes + 1`` bytes.

A refused path raises :class:`PathRefused` with a short ``reason`` ("outside the dataset root",
"not a regular file", "over limits.max_file_bytes (...)"); tables and vector files turn it into
a load error naming the manifest key, media into a counted skip naming the item.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from tfmmrec.data.manifest import DatasetError

#: Default bound when no ``LimitsConfig`` is at hand (its default ``max_file_bytes``).
DEFAULT_MAX_BYTES = 64 * 2**20


class PathRefused(DatasetError):
    """A catalog path that may not be read; ``reason`` is the short, reportable cause."""

    def __init__(self, rel: str, reason: str, detail: str = "") -> None:
        super().__init__(f"{rel}: {reason}" + (f" ({detail})" if detail else ""))
        self.rel, self.reason, self.detail = rel, reason, detail

    @property
    def explained(self) -> str:
        """The reason with its detail, for one-line errors."""
        return self.reason + (f" ({self.detail})" if self.detail else "")


def resolve_in_root(root: str | Path, rel: str | os.PathLike[str], *, max_bytes: int | None = DEFAULT_MAX_BYTES,
                    allow_empty: bool = True) -> Path:
    """``root / rel`` resolved, after checking it may be read.

    Raises :class:`PathRefused` when ``rel`` is absolute, resolves (through ``..`` or symlinks)
    outside ``root``, does not exist, is not a regular file (directory, fifo, socket, device)
    or is larger than ``max_bytes`` (``None``: no size bound); ``allow_empty=False`` also
    refuses a 0-byte file.
    """
    text = os.fspath(rel)
    if not text:
        raise PathRefused(text, "empty path")
    if "\0" in text:
        raise PathRefused(text, "path contains a NUL byte")
    if os.path.isabs(text):
        raise PathRefused(text, "absolute path", "paths must be relative to the dataset root")
    base = os.path.realpath(root)
    full = os.path.realpath(os.path.join(base, text))
    if os.path.commonpath([base, full]) != base:
        raise PathRefused(text, "outside the dataset root")
    try:
        st = os.stat(full)
    except FileNotFoundError:
        raise PathRefused(text, "file not found") from None
    except OSError as err:
        raise PathRefused(text, "cannot be read", str(err.strerror)) from None
    if not stat.S_ISREG(st.st_mode):
        raise PathRefused(text, "not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise PathRefused(text, "over limits.max_file_bytes", f"{st.st_size} > {max_bytes} bytes")
    if not allow_empty and st.st_size == 0:
        raise PathRefused(text, "empty file")
    return Path(full)


def read_bounded(path: str | Path, max_bytes: int | None = DEFAULT_MAX_BYTES, *, rel: str | None = None,
                 limit: int | None = None) -> bytes:
    """The bytes of a file that :func:`resolve_in_root` accepted, read safely.

    Opens with ``O_NOFOLLOW | O_NONBLOCK`` (a symlink swapped in, or a fifo, cannot make it
    follow or block), re-checks that the open file is regular, and reads at most
    ``max_bytes + 1`` bytes: a file that grew past the bound is refused, not read to the end.
    ``limit``: read only the first ``limit`` bytes (a header), without the size check.
    """
    name = rel if rel is not None else str(path)
    with open_checked(path, name) as f:
        if limit is not None:
            return f.read(limit)
        data = f.read(max_bytes + 1) if max_bytes is not None else f.read()
    if max_bytes is not None and len(data) > max_bytes:
        raise PathRefused(name, "over limits.max_file_bytes", f"more than {max_bytes} bytes")
    return data


def open_checked(path: str | Path, name: str) -> BinaryIO:
    """Open a checked path for reading without following a symlink or blocking on a fifo, and
    make sure what was opened is a regular file (the path may have changed since the check)."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as err:
        raise PathRefused(name, "cannot be read", str(err.strerror)) from None
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
        f.close()
        raise PathRefused(name, "not a regular file")
    return f


def read_in_root(root: str | Path, rel: str, max_bytes: int | None = DEFAULT_MAX_BYTES) -> bytes:
    """:func:`resolve_in_root` then :func:`read_bounded`: the whole checked read of one catalog file."""
    return read_bounded(resolve_in_root(root, rel, max_bytes=max_bytes), max_bytes, rel=rel)


def manifest_file(root: str | Path, rel: str, key: str, max_bytes: int | None = DEFAULT_MAX_BYTES) -> Path:
    """A table or vector file named by manifest key ``key``, checked; a refusal names the key."""
    if not isinstance(rel, str) or not rel:
        raise DatasetError(f"manifest key {key!r}: expected a file name relative to the dataset root, got {rel!r}")
    try:
        return resolve_in_root(root, rel, max_bytes=max_bytes)
    except PathRefused as err:
        raise DatasetError(f"manifest key {key!r} ({rel}): {err.explained}") from None
