"""Fill the feature store for a folder ahead of time (``mos-annotator features``): in this
process, or on a Ray cluster (``--ray``), so that the seed, evaluate and the backend only look up.

In this process, images go through the extractor in chunks, so memory stays flat at any folder
size. On Ray, Ray Data reads the files (read tasks anywhere in the cluster) and streams them to
one actor per worker; each actor loads the backbone once and appends the vectors to the feature
store itself, so only keys and errors come back to the driver and its memory does not grow with
the folder. Every node must see the images and the store at the same path (a shared file
system): the store's shards are per writer, so workers never interleave, and shards written
elsewhere can be copied in as files. An actor runs the backbone on one thread: parallelism
across processes rather than a thread team, which a busy core stalls (docs/performance.md).
Files already in the store cost their hash only, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Config
from ..errors import ConfigError, ImageReadError
from .images import check_file

#: Images per batch handed to a Ray actor (a few MB of encoded files).
BATCH = 16
#: Images per extractor call in this process (the progress bar moves once per chunk).
CHUNK = 256


@dataclass
class ExtractionReport:
    """What one run did: images with a vector in the store, how many it computed, what failed."""

    n_images: int
    n_computed: int
    failed: dict[Path, str] = field(default_factory=dict)
    seconds: float = 0.0
    workers: int = 0


class _Worker:
    """Ray actor: a feature extractor with its own store writer, on one thread."""

    def __init__(self, config: Config) -> None:
        from .extractor import FeatureExtractor

        self.extractor = FeatureExtractor.from_config(dataclasses.replace(config, torch_threads=1))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.extractor.extract_encoded(list(zip(batch["path"], batch["bytes"], strict=True)))
        return {
            "path": np.asarray(batch["path"], dtype=object),
            "computed": np.array([not isinstance(r, ImageReadError) and r.computed for r in results]),
            "error": np.array([r.reason if isinstance(r, ImageReadError) else "" for r in results], dtype=object),
        }


def _readable(paths: Sequence[Path], max_bytes: int) -> tuple[list[Path], dict[Path, str]]:
    """The paths Ray may read: regular files within the size limit (a FIFO would hang a read task)."""
    ok: list[Path] = []
    failed: dict[Path, str] = {}
    for path in paths:
        try:
            check_file(path, os.stat(path), max_bytes)
        except OSError as exc:
            failed[path] = exc.strerror or str(exc)
        except ImageReadError as exc:
            failed[path] = exc.reason
        else:
            ok.append(path)
    return ok, failed


def extract_locally(paths: Sequence[Path], config: Config, progress: bool = True) -> ExtractionReport:
    """Vectors of ``paths`` into ``config``'s feature store, in this process."""
    if config.cache_dir is None:
        raise ConfigError("features writes to the feature store: set MOS_CACHE_DIR (or --cache-dir)")
    from .extractor import FeatureExtractor

    started = time.perf_counter()
    failed: dict[Path, str] = {}
    computed = 0
    for part in FeatureExtractor.from_config(config).extract_chunks(paths, CHUNK, progress):
        failed.update(part.failed)
        computed += part.n_computed
    return ExtractionReport(len(paths) - len(failed), computed, failed, time.perf_counter() - started, 1)


def extract_with_ray(paths: Sequence[Path], config: Config, workers: int | None = None, address: str | None = None,
                     progress: bool = True) -> ExtractionReport:
    """Vectors of ``paths`` into ``config``'s feature store by ``workers`` Ray actors.

    ``address``: a running cluster (``ray start --head`` prints it; "auto" finds the local one);
    None starts one here with ``workers`` CPUs for the actors and one for the reads. ``workers``
    defaults to this machine's cores, or on a cluster to its CPUs but one (for the reads)."""
    if config.cache_dir is None:
        raise ConfigError("features --ray writes to the feature store: set MOS_CACHE_DIR (or --cache-dir)")
    try:
        import ray
    except ImportError:
        raise ConfigError("features --ray needs Ray: pip install 'ray[data]'") from None
    from tqdm import tqdm

    started = time.perf_counter()
    paths = [Path(p).resolve() for p in paths]
    config = dataclasses.replace(config, cache_dir=Path(config.cache_dir).resolve())  # the same on every node
    readable, failed = _readable(paths, config.max_image_bytes)
    computed = 0
    own = not ray.is_initialized()
    if own:
        local = None if address else (workers or os.cpu_count() or 1) + 1
        ray.init(address=address, num_cpus=local, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
    try:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 2)) - 1)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = context.print_on_execution_start = False  # one bar, ours, counting images
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notes on its own settings: failures raise
        if readable:
            dataset = ray.data.read_binary_files([str(p) for p in readable], include_paths=True)
            features = dataset.map_batches(_Worker, fn_constructor_kwargs={"config": config}, batch_size=BATCH,
                                           batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                                           num_cpus=1)
            with tqdm(total=len(readable), desc="features", unit="img", disable=not progress) as bar:
                for batch in features.iter_batches(batch_size=None, batch_format="numpy"):
                    computed += int(np.count_nonzero(batch["computed"]))
                    for path, error in zip(batch["path"], batch["error"], strict=True):
                        if error:
                            failed[Path(path)] = str(error)
                    bar.update(len(batch["path"]))
    finally:
        if own:
            ray.shutdown()
    return ExtractionReport(len(paths) - len(failed), computed, failed, time.perf_counter() - started, workers)
