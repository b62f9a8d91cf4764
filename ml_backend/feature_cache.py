"""Disk cache of feature vectors keyed by image content, shared by the seed script and the backend.

Keys are content hashes, so renamed or re-imported files hit the cache and edited files miss it.
Writes are atomic (temp file + ``os.replace``) so concurrent processes never see half a vector;
an unreadable entry is a miss, never a crash.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_KEY = re.compile(r"[0-9a-f]{8,128}")


def content_key(data: bytes) -> str:
    """Cache key of a file's content (sha256 hex)."""
    return hashlib.sha256(data).hexdigest()


class FeatureCache:
    """``root/namespace/ab/abcdef....npy`` float32 vectors; namespace names backbone + settings."""

    def __init__(self, root: Path | str, namespace: str) -> None:
        self.dir = Path(root) / re.sub(r"[^A-Za-z0-9._-]+", "_", namespace)

    def path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"cache key must be a lowercase hex digest, got {key!r}")
        return self.dir / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        path = self.path(key)
        try:
            vec = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as exc:
            log.warning("ignoring unreadable cache entry %s: %s", path, exc)
            return None
        if vec.ndim != 1 or vec.dtype != np.float32 or not np.isfinite(vec).all():
            log.warning("ignoring invalid cache entry %s (%s %s)", path, vec.dtype, vec.shape)
            return None
        return vec

    def put(self, key: str, vec: np.ndarray) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:16]}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide entries from other users' processes
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(vec, dtype=np.float32).ravel())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
