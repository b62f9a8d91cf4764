"""A feature store for millions of images: sharded, append-only files, read by memory map.

Layout: ``<folder>/<writer>-<n>.vec`` holds vectors back to back, ``<writer>-<n>.idx`` one
fixed-size record per vector (its 32-byte content hash, offset, dtype, length). Every process
appends to shards of its own (``writer`` = host, pid and start time), so several writers never
interleave; a vector's bytes are written before its index record, and a record is one small
``write`` to a file opened for appending, so a reader sees whole entries or none. A crash leaves
at most unindexed bytes or a torn last record, which readers skip. Shards close at
``SHARD_BYTES``.

Readers load every index into one sorted array (the key as four 64-bit words and its location:
64 bytes per image in memory) and map the vector files; a key they do not know makes them
read whatever the index files gained since (other writers), so the seed and the backend share
one store. Bytes per image on disk: the vector plus 48.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np

#: A shard's vector file is closed once it holds this many bytes.
SHARD_BYTES = 1 << 30
RECORD = np.dtype([("key", "u1", (32,)), ("offset", "<u8"), ("dtype", "u1"), ("pad", "V3"), ("length", "<u4")])
_DTYPES = (np.dtype(np.float16), np.dtype(np.float32))


def _words(keys: np.ndarray) -> np.ndarray:
    """(n, 32) key bytes -> (n, 4) big-endian 64-bit words: their order is the bytes' order."""
    return np.ascontiguousarray(keys, dtype=np.uint8).view(">u8").astype(np.uint64).reshape(-1, 4)


#: A key the store does not know makes it look for other writers' entries at most this often.
REFRESH_S = 1.0


class FeatureStore:
    """``get``/``put`` float vectors by 32-byte content hash (``bytes``) in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._index_sizes: dict[str, int] = {}  # index file -> bytes read so far
        # Keys as four big-endian 64-bit words, sorted (numpy's fixed "S32" would drop a key's
        # trailing zero bytes: one sha256 in 256 ends with one).
        self._keys = np.empty((0, 4), dtype=np.uint64)
        self._loc = np.empty((0, 4), dtype=np.int64)  # shard number, offset, dtype code, length
        self._recent: dict[bytes, tuple[int, int, int, int]] = {}  # entries since the last merge
        self._shards: list[str] = []  # shard number -> vector file name
        self._shard_numbers: dict[str, int] = {}
        self._maps: dict[int, np.memmap] = {}
        self._writer = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        self._files: tuple[int, int, int, str] | None = None  # vec fd, idx fd, bytes written, stem
        self._counter = 0
        self._last_refresh = 0.0
        self._refresh()

    def __len__(self) -> int:
        return len(self._keys) + len(self._recent)

    # --- reading ---------------------------------------------------------------------------
    def get(self, key: bytes) -> np.ndarray | None:
        """The vector stored under ``key`` as stored (float16 or float32), or None."""
        with self._lock:
            where = self._find(key)
            if where is None and time.monotonic() - self._last_refresh >= REFRESH_S and self._refresh():
                where = self._find(key)
            if where is None:
                return None
            shard, offset, dtype, length = where
            data = self._map(shard, offset + length * _DTYPES[dtype].itemsize)
            if data is None:
                return None
            return np.frombuffer(data, dtype=_DTYPES[dtype], count=length, offset=offset).copy()

    def _find(self, key: bytes) -> tuple[int, int, int, int] | None:
        hit = self._recent.get(key)
        if hit is not None:
            return hit
        words = _words(np.frombuffer(key, dtype=np.uint8)[None, :])[0]
        i = int(np.searchsorted(self._keys[:, 0], words[0]))
        while i < len(self._keys) and self._keys[i, 0] == words[0]:
            if np.array_equal(self._keys[i], words):
                shard, offset, dtype, length = (int(v) for v in self._loc[i])
                return shard, offset, dtype, length
            i += 1
        return None

    def _refresh(self) -> bool:
        """Read what the index files gained since the last look; True if anything."""
        self._last_refresh = time.monotonic()
        try:
            names = sorted(p.name for p in self.folder.glob("*.idx"))
        except OSError:
            return False
        keys, locs = [], []
        for name in names:
            try:
                size = (self.folder / name).stat().st_size
            except OSError:
                continue
            done = self._index_sizes.get(name, 0)
            whole = size - size % RECORD.itemsize  # a torn last record is read once it is complete
            if whole <= done:
                continue
            try:
                with open(self.folder / name, "rb") as handle:
                    handle.seek(done)
                    records = np.frombuffer(handle.read(whole - done), dtype=RECORD)
            except OSError:
                continue
            self._index_sizes[name] = whole
            shard = self._shard_number(name[: -len(".idx")] + ".vec")
            keys.append(_words(records["key"]))
            locs.append(np.column_stack([np.full(len(records), shard), records["offset"].astype(np.int64),
                                         records["dtype"], records["length"]]).astype(np.int64))
        if not keys:
            return False
        self._merge(np.concatenate(keys), np.concatenate(locs))
        return True

    def _merge(self, keys: np.ndarray | None = None, locs: np.ndarray | None = None) -> None:
        """Fold new entries (and the recent ones) into the sorted arrays; a later entry of a key wins."""
        parts_k, parts_l = [self._keys], [self._loc]
        if self._recent:
            raw = np.frombuffer(b"".join(self._recent), dtype=np.uint8).reshape(-1, 32)
            parts_k.append(_words(raw))
            parts_l.append(np.array(list(self._recent.values()), dtype=np.int64).reshape(-1, 4))
        if keys is not None and locs is not None:
            parts_k.append(keys)
            parts_l.append(locs)
        all_keys, all_loc = np.concatenate(parts_k), np.concatenate(parts_l)
        order = np.lexsort(all_keys.T[::-1])  # by word 0, then 1, 2, 3; stable: later entries last
        all_keys, all_loc = all_keys[order], all_loc[order]
        last = np.ones(len(all_keys), dtype=bool)
        last[:-1] = np.any(all_keys[1:] != all_keys[:-1], axis=1)
        self._keys, self._loc, self._recent = all_keys[last], all_loc[last], {}

    def _shard_number(self, name: str) -> int:
        if name not in self._shard_numbers:
            self._shard_numbers[name] = len(self._shards)
            self._shards.append(name)
        return self._shard_numbers[name]

    def _map(self, shard: int, end: int) -> np.memmap | None:
        """The shard's vector file mapped, covering at least ``end`` bytes (None if it does not)."""
        data = self._maps.get(shard)
        if data is None or len(data) < end:
            try:
                data = np.memmap(self.folder / self._shards[shard], dtype=np.uint8, mode="r")
            except (OSError, ValueError):
                return None
            self._maps[shard] = data
        return data if len(data) >= end else None

    # --- writing ---------------------------------------------------------------------------
    def put(self, key: bytes, vec: np.ndarray) -> None:
        """Append ``vec`` (float16 or float32) under ``key``; OSError when the folder cannot be written."""
        vec = np.ascontiguousarray(vec).ravel()
        if vec.dtype not in _DTYPES or len(key) != 32:
            raise ValueError("a store entry is a float16/float32 vector under a 32-byte key")
        payload = vec.tobytes()
        with self._lock:
            if self._files is None or self._files[2] + len(payload) > SHARD_BYTES:
                self._open_shard()
            assert self._files is not None
            vec_fd, idx_fd, offset, stem = self._files
            os.write(vec_fd, payload)  # the vector first: an index record never points past the data
            record = np.zeros(1, dtype=RECORD)
            record[0] = (np.frombuffer(key, dtype=np.uint8), offset, _DTYPES.index(vec.dtype), b"", len(vec))
            os.write(idx_fd, record.tobytes())
            self._files = (vec_fd, idx_fd, offset + len(payload), stem)
            self._index_sizes[f"{stem}.idx"] = self._index_sizes.get(f"{stem}.idx", 0) + RECORD.itemsize
            self._recent[key] = (self._shard_number(f"{stem}.vec"), offset, _DTYPES.index(vec.dtype), len(vec))
            if len(self._recent) > max(4096, len(self._keys) // 8):
                self._merge()

    def _open_shard(self) -> None:
        self.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._counter += 1
        stem = f"{self._writer}-{self._counter}"
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        vec_fd = os.open(self.folder / f"{stem}.vec", flags, 0o644)
        idx_fd = os.open(self.folder / f"{stem}.idx", flags, 0o644)
        self._files = (vec_fd, idx_fd, 0, stem)

    def close(self) -> None:
        """Close this writer's open shard (a later ``put`` starts a new one)."""
        if self._files is not None:
            os.close(self._files[0])
            os.close(self._files[1])
            self._files = None

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass
