"""Feature extraction over many images: cached, resumable, tolerant of bad files.

Files are read once (the bytes give both the cache key and the decoded image); where torch leaves
cores free, a small thread pool reads, hashes and decodes ahead while the main thread runs the
network on batches of same-size images (otherwise the main thread decodes between batches).
Every finished vector goes to the cache at once, so an interrupted run resumes.

``extract_one`` serves the backend, which sees the same images on every request: it remembers each
file's (mtime, size, inode) -> content key and keeps recent vectors in memory, so a repeated
request costs one ``stat`` instead of a read, a hash and a store lookup. A file that changed on
disk is hashed again, so it gets new features.
"""
from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ..config import DEFAULTS, Config
from ..errors import ConfigError, ImageReadError
from .backbones import Backbone, get_backbone
from .cache import FeatureCache, as_stored, content_key, stored_form
from .images import check_size, decode_image, read_image_bytes
from .onnx_graphs import OnnxGraphs
from .onnx_graphs import available as onnx_available
from .threads import ThreadGovernor

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")

#: Pixels per batch. On CPU, batching only pays off for small images (larger batches get slower
#: once the activations leave the CPU cache).
MAX_BATCH_PIXELS = 4 * 256 * 256
#: Vectors ``extract_one`` keeps in memory (float16, ~8 KB each for the default backbone).
MEMORY_VECTORS = 10_000
#: File identities ``extract_one`` remembers (path -> stat + key, ~300 bytes each).
MEMORY_PATHS = 200_000


@dataclass
class FeatureSet:
    """Features of the images that could be read, in input order, plus what failed and why."""

    paths: list[Path]
    features: np.ndarray  # [len(paths), dim] float32 (``extract_to_file``: a float16 memory map)
    failed: dict[Path, str] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)  # content hash of each path (equal = same bytes)
    n_computed: int = 0  # vectors this run computed (the others came from the cache)


class _Prepared(NamedTuple):
    key: str
    cached: np.ndarray | None  # set on a cache hit...
    tensor: Tensor | None  # ...otherwise the preprocessed image


class Encoded(NamedTuple):
    """A file ``extract_encoded`` put in the cache: its content key, and whether it computed it."""

    key: str
    computed: bool


class _Pending(NamedTuple):
    index: int
    key: str
    tensor: Tensor


class _LRU(Generic[K, V]):
    """A thread-safe, size-bounded mapping that forgets the least recently used entry first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        if self.capacity < 1:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


class _FileId(NamedTuple):
    """What must stay equal for a file's content to be assumed unchanged."""

    mtime_ns: int
    size: int
    inode: int


def _file_id(path: Path) -> _FileId | None:
    try:
        st = path.stat()
    except OSError:
        return None  # reading the file reports the problem
    return _FileId(st.st_mtime_ns, st.st_size, st.st_ino)


class _InlineExecutor(Executor):
    """Runs each job when it is submitted, in the caller's thread: for when no core is free."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        future: Future[R] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # handed to the caller through the future, as a pool would
            future.set_exception(exc)
        return future


def _decode_workers(beside_onnx: bool = False) -> int:
    """Decode threads only on the cores torch's threads leave free: a decode thread on a busy core
    stalls the network's parallel sections, so decoding inline is faster there. ONNX Runtime's
    threads do not spin-wait, so one decode thread beside them fills their gaps instead (both
    measured: docs/performance.md)."""
    free = min(4, max(0, (os.cpu_count() or 1) - torch.get_num_threads()))
    return max(free, 1) if beside_onnx else free


def _usable(device: torch.device) -> torch.device:
    """``device``, checked to exist here; on a GPU with cuDNN's TF32 convolutions off (PyTorch's
    default is on), so that the features stay the float32 ones the CPU, the cache and the prior hold."""
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"MOS_DEVICE={device}: no CUDA device here (torch.cuda.is_available() is False)")
        if (device.index or 0) >= torch.cuda.device_count():
            raise ConfigError(f"MOS_DEVICE={device}: this machine has {torch.cuda.device_count()} CUDA devices")
        torch.backends.cudnn.allow_tf32 = False
    return device


def _prefetch(
    pool: Executor, fn: Callable[[T], R], items: Iterable[T], depth: int
) -> Iterator[Future[R]]:
    """Futures of ``fn(item)`` in order, keeping at most ``depth`` in flight (bounded memory)."""
    queue: deque[Future[R]] = deque()
    for item in items:
        queue.append(pool.submit(fn, item))
        if len(queue) > depth:
            yield queue.popleft()
    while queue:
        yield queue.popleft()


class FeatureExtractor:
    """Backbone + cache + image loading; the one way the project turns images into vectors."""

    def __init__(
        self,
        backbone: str | Backbone = DEFAULTS.backbone,
        cache_dir: Path | str | None = None,
        max_side: int = DEFAULTS.max_side,
        max_bytes: int = DEFAULTS.max_image_bytes,
        max_pixels: int = DEFAULTS.max_pixels,
        batch_size: int = 8,
        num_threads: int | None = None,
        backbone_params: dict[str, Any] | None = None,
        memory_vectors: int = MEMORY_VECTORS,
        runtime: str = DEFAULTS.runtime,
        device: str = DEFAULTS.device,
    ) -> None:
        self.threads = ThreadGovernor(num_threads or None)  # None or 0: the cores free, re-measured
        self.device = torch.device(device)
        if isinstance(backbone, str):
            backbone = get_backbone(backbone, backbone_params)
        self.backbone = backbone.to(_usable(self.device))
        # ONNX Runtime keeps its graphs beside the cache; without a cache folder, or without the
        # package, or on a GPU, PyTorch runs everything.
        self.graphs = (OnnxGraphs(backbone, Path(cache_dir) / "onnx")
                       if runtime == "onnxruntime" and cache_dir is not None and onnx_available()
                       and self.device.type == "cpu" else None)
        self.max_side = max_side
        self.max_bytes = max_bytes
        self.max_pixels = max_pixels
        self.batch_size = max(1, batch_size)
        # max_side changes the pixels the network sees, so it is part of the cache namespace.
        self.namespace = f"{backbone.name}-{backbone.version}-max{max_side}"
        self.cache = FeatureCache(cache_dir, self.namespace) if cache_dir is not None else None
        self._keys: _LRU[Path, tuple[_FileId, str]] = _LRU(MEMORY_PATHS)
        self._vectors: _LRU[str, np.ndarray] = _LRU(memory_vectors)  # as stored: float16
        self._key_locks: dict[str, threading.Lock] = {}
        self._key_locks_guard = threading.Lock()

    @classmethod
    def from_config(cls, config: Config, **kwargs: Any) -> FeatureExtractor:
        """The extractor the settings describe (backbone, its weights, cache, size, threads)."""
        return cls(config.backbone, cache_dir=config.cache_dir, max_side=config.max_side,
                   max_bytes=config.max_image_bytes, max_pixels=config.max_pixels,
                   num_threads=config.torch_threads or None, backbone_params=config.backbone_params(),
                   runtime=config.runtime, device=config.device, **kwargs)

    @property
    def dim(self) -> int:
        return self.backbone.dim

    def extract(self, paths: Sequence[Path | str], progress: bool = True) -> FeatureSet:
        """Features for ``paths``; unreadable images land in ``failed`` and the rest proceeds."""
        paths = [Path(p) for p in paths]
        vectors: dict[int, np.ndarray] = {}
        keys: dict[int, str] = {}
        failed: dict[Path, str] = {}
        pending: dict[tuple[int, ...], list[_Pending]] = defaultdict(list)
        computed = 0

        def flush(shape: tuple[int, ...]) -> None:
            nonlocal computed
            batch = pending.pop(shape)
            computed += len(batch)
            rows = self._forward([p.tensor for p in batch])
            for item, row in zip(batch, rows, strict=True):
                vectors[item.index] = row
                self._store(item.key, row)
            bar.update(len(batch))

        workers = _decode_workers(self.graphs is not None)
        with (
            tqdm(total=len(paths), desc="features", unit="img", disable=not progress) as bar,
            ThreadPoolExecutor(workers, thread_name_prefix="decode") if workers else _InlineExecutor() as pool,
        ):
            jobs = _prefetch(pool, self._prepare, paths, depth=2 * self.batch_size + workers)
            for index, job in enumerate(jobs):
                try:
                    prepared = job.result()
                except ImageReadError as exc:
                    failed[paths[index]] = exc.reason
                    bar.update(1)
                    continue
                keys[index] = prepared.key
                if prepared.cached is not None:
                    vectors[index] = prepared.cached
                    bar.update(1)
                    continue
                shape = tuple(prepared.tensor.shape)
                group = pending[shape]
                group.append(_Pending(index, prepared.key, prepared.tensor))
                if len(group) >= self._batch_limit(shape):
                    flush(shape)
                elif sum(map(len, pending.values())) >= self.batch_size:
                    flush(max(pending, key=lambda s: len(pending[s])))
            for shape in list(pending):
                flush(shape)

        done = sorted(vectors)
        features = np.stack([vectors[i] for i in done]) if done else np.empty((0, self.dim))
        return FeatureSet([paths[i] for i in done], features.astype(np.float32, copy=False), failed,
                          [keys[i] for i in done], computed)

    def extract_chunks(self, paths: Sequence[Path | str], chunk: int, progress: bool = True) -> Iterator[FeatureSet]:
        """``extract`` ``chunk`` images at a time, one progress bar for all: memory stays flat
        however many images there are."""
        paths = [Path(p) for p in paths]
        with tqdm(total=len(paths), desc="features", unit="img", disable=not progress) as bar:
            for start in range(0, len(paths), chunk):
                yield self.extract(paths[start : start + chunk], progress=False)
                bar.update(min(chunk, len(paths) - start))

    def extract_to_file(self, paths: Sequence[Path | str], folder: Path | str | None = None,
                        progress: bool = True, chunk: int = 4096) -> FeatureSet:
        """``extract`` for folders whose features do not fit in memory: ``features`` is a float16
        memory map (what the cache stores, 8 KB per image for the default backbone) of an
        anonymous file in ``folder`` (default: the system's temporary folder), which goes away
        with the map."""
        kept: list[Path] = []
        keys: list[str] = []
        failed: dict[Path, str] = {}
        computed = 0
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix="mos-features-") as handle:
            for part in self.extract_chunks(paths, chunk, progress):
                handle.write(np.ascontiguousarray(part.features, dtype=np.float16).tobytes())
                kept += part.paths
                keys += part.keys
                failed.update(part.failed)
                computed += part.n_computed
            handle.flush()
            features = (np.memmap(handle, dtype=np.float16, mode="r", shape=(len(kept), self.dim)) if kept
                        else np.empty((0, self.dim), dtype=np.float16))
        return FeatureSet(kept, features, failed, keys, computed)

    def extract_one(self, path: Path | str, as_stored: bool = False) -> np.ndarray:
        """Feature vector of one image; ImageReadError.

        Repeated calls on an unchanged file cost a ``stat`` and a memory lookup. Concurrent calls
        for the same new image compute it once: the others wait for it, then read it back.
        ``as_stored`` returns the vector as the cache holds it (float16 where it fits) instead of
        float32, for callers that stack many rows and convert once (one conversion, not one per row).
        """
        path = Path(path)
        file_id = _file_id(path)
        known = self._keys.get(path)
        if known is not None and known[0] == file_id:
            vec = self._lookup(known[1])
            if vec is not None:
                return vec if as_stored else vec.astype(np.float32)
        data = read_image_bytes(path, self.max_bytes)
        key = content_key(data)
        if file_id is not None:
            self._keys.put(path, (file_id, key))
        with self._key_lock(key):
            vec = self._lookup(key)
            if vec is None:
                img = decode_image(data, path, self.max_side, self.max_pixels)
                vec = self._forward([self.backbone.preprocess(img)])[0]
                self._store(key, vec)
                return stored_form(vec) if as_stored else vec
            return vec if as_stored else vec.astype(np.float32)

    def _lookup(self, key: str) -> np.ndarray | None:
        """Memory first, then the disk cache (promoted to memory); as stored (float16)."""
        vec = self._vectors.get(key)
        if vec is not None:
            return vec
        vec = self.cache.get(key) if self.cache is not None else None
        if vec is None or vec.shape != (self.dim,):
            return None
        vec = stored_form(vec)
        self._vectors.put(key, vec)
        return vec

    @contextmanager
    def _key_lock(self, key: str) -> Iterator[None]:
        """Holds the lock of ``key``; the entry is dropped afterwards so the map stays small.

        Dropping it is safe: whoever takes a fresh lock for the key looks the vector up first,
        and it is stored before the lock is released.
        """
        with self._key_locks_guard:
            lock = self._key_locks.setdefault(key, threading.Lock())
        try:
            with lock:
                yield
        finally:
            with self._key_locks_guard:
                if self._key_locks.get(key) is lock:
                    del self._key_locks[key]

    def extract_encoded(self, files: Sequence[tuple[Path | str, bytes]]) -> list[Encoded | ImageReadError]:
        """For files someone else has read (a Ray read task): each one's content key once its
        vector is in the cache, or why it cannot be used. Cache hits cost the hash; misses run in
        batches of one image shape, as ``extract``'s do."""
        results: list[Encoded | ImageReadError] = []
        pending: dict[tuple[int, ...], list[_Pending]] = defaultdict(list)
        for index, (path, data) in enumerate(files):
            try:
                check_size(path, len(data), self.max_bytes)
                prepared = self._prepare_data(Path(path), data)
            except ImageReadError as exc:
                results.append(exc)
                continue
            results.append(Encoded(prepared.key, prepared.tensor is not None))
            if prepared.tensor is not None:
                pending[tuple(prepared.tensor.shape)].append(_Pending(index, prepared.key, prepared.tensor))
        for shape, group in pending.items():
            step = self._batch_limit(shape)
            for start in range(0, len(group), step):
                batch = group[start : start + step]
                for item, row in zip(batch, self._forward([p.tensor for p in batch]), strict=True):
                    self._store(item.key, row)
        return results

    def _prepare(self, path: Path) -> _Prepared:
        """Runs in the decode threads: read once, hash, and decode only on a cache miss."""
        return self._prepare_data(path, read_image_bytes(path, self.max_bytes))

    def _prepare_data(self, path: Path, data: bytes) -> _Prepared:
        key = content_key(data)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None and cached.shape == (self.dim,):
            return _Prepared(key, cached, None)
        img = decode_image(data, path, self.max_side, self.max_pixels)
        return _Prepared(key, None, self.backbone.preprocess(img))

    def _batch_limit(self, shape: tuple[int, ...]) -> int:
        return max(1, min(self.batch_size, MAX_BATCH_PIXELS // (shape[-1] * shape[-2])))

    @torch.inference_mode()
    def _forward(self, tensors: list[Tensor]) -> np.ndarray:
        """Rows as the cache will return them, so fresh and cached features are identical."""
        threads = self.threads.adjust()
        batch = torch.stack(tensors)
        rows = self.graphs.run(batch, threads) if self.graphs is not None else None
        if rows is None:
            rows = self.backbone(batch.to(self.device)).float().cpu().numpy()
        return np.stack([as_stored(row) for row in rows])

    def _store(self, key: str, vec: np.ndarray) -> None:
        if self.cache is not None:
            self.cache.put(key, vec)
        self._vectors.put(key, stored_form(vec))
