"""Feature extraction over many images: cached, resumable, tolerant of bad files.

Files are read once (the bytes give both the cache key and the decoded image); a small thread pool
reads, hashes and decodes ahead while the main thread runs the network on batches of same-size
images. Every finished vector goes to the cache at once, so an interrupted run resumes.
"""
from __future__ import annotations

import os
from collections import defaultdict, deque
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence, TypeVar

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from .backbones import Backbone, get_backbone
from .feature_cache import FeatureCache, content_key
from .images import ImageReadError, decode_image, read_image_bytes

T = TypeVar("T")
R = TypeVar("R")

#: Pixels per batch. On CPU, batching only pays off for small images (measured with
#: efficientnet_lite0: x3 at 64 px, +20% at 224 px, slower from ~320 px as activations leave cache).
MAX_BATCH_PIXELS = 4 * 256 * 256


@dataclass
class FeatureSet:
    """Features of the images that could be read, in input order, plus what failed and why."""

    paths: list[Path]
    features: np.ndarray  # [len(paths), dim] float32
    failed: dict[Path, str] = field(default_factory=dict)


class _Prepared(NamedTuple):
    key: str
    cached: np.ndarray | None  # set on a cache hit...
    tensor: Tensor | None  # ...otherwise the preprocessed image


class _Pending(NamedTuple):
    index: int
    key: str
    tensor: Tensor


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
        backbone: str | Backbone = "efficientnet_lite0",
        cache_dir: Path | str | None = None,
        max_side: int = 1024,
        batch_size: int = 8,
        num_threads: int | None = None,
        backbone_params: dict[str, Any] | None = None,
    ) -> None:
        if num_threads:  # None or 0: torch's own default
            torch.set_num_threads(num_threads)
        if isinstance(backbone, str):
            backbone = get_backbone(backbone, **(backbone_params or {}))
        self.backbone = backbone
        self.max_side = max_side
        self.batch_size = max(1, batch_size)
        # max_side changes the pixels the network sees, so it is part of the cache namespace.
        self.namespace = f"{backbone.name}-{backbone.version}-max{max_side}"
        self.cache = FeatureCache(cache_dir, self.namespace) if cache_dir is not None else None

    @property
    def dim(self) -> int:
        return self.backbone.dim

    def extract(self, paths: Sequence[Path | str], progress: bool = True) -> FeatureSet:
        """Features for ``paths``; unreadable images land in ``failed`` and the rest proceeds."""
        paths = [Path(p) for p in paths]
        vectors: dict[int, np.ndarray] = {}
        failed: dict[Path, str] = {}
        pending: dict[tuple[int, ...], list[_Pending]] = defaultdict(list)

        def flush(shape: tuple[int, ...]) -> None:
            batch = pending.pop(shape)
            rows = self._forward([p.tensor for p in batch])
            for item, row in zip(batch, rows):
                vectors[item.index] = row
                self._store(item.key, row)
            bar.update(len(batch))

        workers = min(4, os.cpu_count() or 1)
        with (
            tqdm(total=len(paths), desc="features", unit="img", disable=not progress) as bar,
            ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool,
        ):
            jobs = _prefetch(pool, self._prepare, paths, depth=2 * self.batch_size + workers)
            for index, job in enumerate(jobs):
                try:
                    prepared = job.result()
                except ImageReadError as exc:
                    failed[paths[index]] = exc.reason
                    bar.update(1)
                    continue
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
        return FeatureSet([paths[i] for i in done], features.astype(np.float32, copy=False), failed)

    def extract_one(self, path: Path | str) -> np.ndarray:
        """Feature vector of one image (a cache hit costs a read and a hash); ImageReadError."""
        prepared = self._prepare(Path(path))
        if prepared.cached is not None:
            return prepared.cached
        vec = self._forward([prepared.tensor])[0]
        self._store(prepared.key, vec)
        return vec

    def _prepare(self, path: Path) -> _Prepared:
        """Runs in the decode threads: read once, hash, and decode only on a cache miss."""
        data = read_image_bytes(path)
        key = content_key(data)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None and cached.shape == (self.dim,):
            return _Prepared(key, cached, None)
        img = decode_image(data, path, self.max_side)
        return _Prepared(key, None, self.backbone.preprocess(img))

    def _batch_limit(self, shape: tuple[int, ...]) -> int:
        return max(1, min(self.batch_size, MAX_BATCH_PIXELS // (shape[-1] * shape[-2])))

    @torch.inference_mode()
    def _forward(self, tensors: list[Tensor]) -> np.ndarray:
        return self.backbone(torch.stack(tensors)).float().numpy()

    def _store(self, key: str, vec: np.ndarray) -> None:
        if self.cache is not None:
            self.cache.put(key, vec)
