"""On-disk cache of frozen item embeddings.

Encoding media is the expensive step, and with a frozen encoder its result depends only on the
encoder and the content, so it is computed once: the key is the modality, the encoder name and
a hash of the content (item ids, texts, and each file's path, size and modification time).
Files are written to a temporary name and renamed, so an interrupted run never leaves a
truncated entry behind.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def content_hash(parts: Iterable[str]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:20]


def file_fingerprints(root: Path, paths: list[str]) -> list[str]:
    out = []
    for rel in paths:
        try:
            st = os.stat(root / rel) if rel else None
            out.append(f"{rel}:{st.st_size}:{st.st_mtime_ns}" if st else "")
        except OSError:
            out.append(f"{rel}:missing")
    return out


class EmbeddingStore:
    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.npz"

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        with np.load(path) as data:
            return data["embeddings"], data["mask"]

    def put(self, key: str, embeddings: np.ndarray, mask: np.ndarray) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, embeddings=embeddings, mask=mask)
        os.replace(tmp, path)
        return path
