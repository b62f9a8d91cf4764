"""Disk cache of feature vectors keyed by image content, shared by the seed and the backend.

Keys are content hashes, so renamed or re-imported files hit the cache and edited files miss it.
Vectors are stored as float16 (half the disk of float32; docs/performance.md has the bytes per
image) and handed out as float32; features are pooled activations whose float16 round-trip
(~3 significant digits) changes predictions negligibly. Vectors with values beyond
float16's range are stored as float32. Writes are atomic (temp file + ``os.replace``) so concurrent
processes never see half a vector; an unreadable entry is a miss, never a crash.
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
#: Part of the folder name: bump when the on-disk layout changes, so old entries are never misread.
CACHE_FORMAT = "f16-v2"
_STORED = (np.dtype(np.float16), np.dtype(np.float32))
_F16_MAX = float(np.finfo(np.float16).max)


def stored_form(vec: np.ndarray) -> np.ndarray:
    """``vec`` as the cache stores it: float16 when every value fits, else float32."""
    vec = np.asarray(vec, dtype=np.float32).ravel()
    fits = vec.size == 0 or float(np.abs(vec).max()) <= _F16_MAX
    return vec.astype(np.float16) if fits else vec


def as_stored(vec: np.ndarray) -> np.ndarray:
    """``vec`` as a later cache hit returns it (float32), so fresh and cached features agree."""
    return stored_form(vec).astype(np.float32, copy=False)


def content_key(data: bytes) -> str:
    """Cache key of a file's content (sha256 hex)."""
    return hashlib.sha256(data).hexdigest()


class FeatureCache:
    """``root/<namespace>-<CACHE_FORMAT>/ab/abcdef....npy``; namespace names backbone + settings."""

    def __init__(self, root: Path | str, namespace: str) -> None:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{namespace}-{CACHE_FORMAT}")
        self.dir = Path(root) / name
        self._warned = False

    def path(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise ValueError(f"cache key must be a lowercase hex digest, got {key!r}")
        return self.dir / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The float32 vector stored under ``key``, or None (missing or unusable entry)."""
        path = self.path(key)
        try:
            vec = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as exc:
            log.warning("ignoring unreadable cache entry %s: %s", path, exc)
            return None
        if vec.ndim != 1 or vec.dtype not in _STORED or not np.isfinite(vec).all():
            log.warning("ignoring invalid cache entry %s (%s %s)", path, vec.dtype, vec.shape)
            return None
        return vec.astype(np.float32, copy=False)

    def put(self, key: str, vec: np.ndarray) -> None:
        """Store ``vec``; a cache that cannot be written (read-only, full) is logged once and
        skipped: the features are still returned, only not kept."""
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:16]}.", suffix=".tmp")
        except OSError as exc:
            self._not_writable(exc)
            return
        try:
            os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide entries from other users' processes
            with os.fdopen(fd, "wb") as f:
                np.save(f, stored_form(vec))
            os.replace(tmp, path)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if not isinstance(exc, OSError):
                raise
            self._not_writable(exc)

    def _not_writable(self, exc: OSError) -> None:
        if not self._warned:
            log.warning("feature cache %s is not writable (%s): features are not kept", self.dir, exc)
            self._warned = True
