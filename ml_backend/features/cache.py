"""Disk cache of feature vectors keyed by image content, shared by the seed and the backend.

Keys are content hashes, so renamed or re-imported files hit the cache and edited files miss it.
Vectors are stored as float16 (half the disk of float32; docs/performance.md has the bytes per
image) and handed out as float32; features are pooled activations whose float16 round-trip
(~3 significant digits) changes predictions negligibly. Vectors with values beyond
float16's range are stored as float32. The entries live in a ``FeatureStore`` (``store.py``:
sharded append-only files, safe for several writers, read by memory map); an unusable entry is a
miss, never a crash, and the recomputed vector is appended (the later entry wins).
"""
from __future__ import annotations

import fcntl
import hashlib
import logging
import re
import shutil
from pathlib import Path

import numpy as np

from .store import FeatureStore

log = logging.getLogger(__name__)

_KEY = re.compile(r"[0-9a-f]{64}")
#: Part of the folder name: bump when the on-disk layout changes, so old entries are never misread.
CACHE_FORMAT = "store-v1"
#: The one-file-per-image layout before the store, moved into it on first use.
LEGACY_FORMAT = "f16-v2"
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
    """``root/<namespace>-<CACHE_FORMAT>/``: a ``FeatureStore`` (sharded, append-only); namespace
    names backbone + settings. A one-file-per-image cache of the same namespace (the layout
    before ``store-v1``) is moved into the store the first time it is opened."""

    def __init__(self, root: Path | str, namespace: str) -> None:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{namespace}-{CACHE_FORMAT}")
        self.dir = Path(root) / name
        self._warned = False
        self.store = FeatureStore(self.dir)
        legacy = Path(root) / re.sub(r"[^A-Za-z0-9._-]+", "_", f"{namespace}-{LEGACY_FORMAT}")
        if legacy.is_dir():
            self._migrate(legacy)

    @staticmethod
    def _key(key: str) -> bytes:
        if not _KEY.fullmatch(key):
            raise ValueError(f"cache key must be a sha256 hex digest, got {key!r}")
        return bytes.fromhex(key)

    def get(self, key: str) -> np.ndarray | None:
        """The float32 vector stored under ``key``, or None (missing or unusable entry)."""
        vec = self.store.get(self._key(key))
        if vec is None:
            return None
        if not np.isfinite(vec).all():
            log.warning("ignoring invalid cache entry %s in %s", key, self.dir)
            return None
        return vec.astype(np.float32, copy=False)

    def put(self, key: str, vec: np.ndarray) -> None:
        """Store ``vec``; a cache that cannot be written (read-only, full) is logged once and
        skipped: the features are still returned, only not kept."""
        try:
            self.store.put(self._key(key), stored_form(vec))
        except OSError as exc:
            self._not_writable(exc)

    def _migrate(self, legacy: Path) -> None:
        """Move every readable ``.npy`` entry of ``legacy`` into the store, then remove it. One
        process at a time (a lock file); a later one finds nothing left to move."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(self.dir / ".migrate.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                entries = sorted(legacy.glob("??/*.npy"))
                if entries:
                    log.info("moving %d cached features from %s into %s", len(entries), legacy, self.dir)
                for path in entries:
                    try:
                        vec = np.load(path, allow_pickle=False)
                    except (OSError, ValueError, EOFError):
                        vec = None
                    if (vec is not None and _KEY.fullmatch(path.stem) and vec.ndim == 1
                            and vec.dtype in _STORED and np.isfinite(vec).all()):
                        self.store.put(bytes.fromhex(path.stem), vec)
                    path.unlink(missing_ok=True)
                shutil.rmtree(legacy, ignore_errors=True)
        except OSError as exc:
            log.warning("could not move the old feature cache %s into %s (%s): it is left as it is",
                        legacy, self.dir, exc)
        self.store.close()

    def _not_writable(self, exc: OSError) -> None:
        if not self._warned:
            log.warning("feature cache %s is not writable (%s): features are not kept", self.dir, exc)
            self._warned = True
