"""Measure the speed targets of the MOS Annotator and print one table (``mos-annotator benchmark``).

Extraction throughput per backbone (cold, cached, model alone, beside a CPU-bound process), the
seed end to end against a real Label Studio, annotation -> new model latency with real processes,
/predict latency over HTTP against a real backend process, retrain time, selection time and peak
memory, backend peak memory, ``features --ray`` with 1 and 2 workers, and (``--store-vectors``)
the feature store at scale. Everything runs in a temporary folder on 127.0.0.1; the image folder
is read in place.

    mos-annotator benchmark              # full run
    mos-annotator benchmark --quick      # fewer repetitions, no 100k DBSCAN
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import requests
import torch
from PIL import Image

from ..config import DEFAULTS, RUNTIMES, Config
from ..features.backbones import EfficientNetLite0, get_backbone
from ..features.extractor import FeatureExtractor
from ..features.images import list_images, load_image
from ..features.onnx_graphs import MIN_IMAGES
from ..features.store import FeatureStore
from ..labelstudio.client import LabelStudioClient
from ..labelstudio.label_config import blind, bundled_config
from ..labelstudio.seeding import SeedOptions, seed_project
from ..labelstudio.task_images import local_files_url
from ..prediction import PREDICTORS
from ..service.service import MOSService
from ..service.state import ProjectState, StateStore
from .fakes import export_only_label_studio, number_result
from .local_stack import LabelStudioSettings, free_port, start_backend, start_label_studio

#: The clive-dev photos beside the repository, from its root (generated images when absent).
CLIVE = Path("../shared/data/clive-dev/images")
NUMBER_CONFIG = blind(bundled_config("number_0_100.xml").read_text())  # as the default seed makes it
#: The synthetic rows' width (feature store, selection): EfficientNet-Lite0's, the default backbone's.
FEATURE_DIM = EfficientNetLite0.dim
#: Torch's own thread count, before any extractor's governor changes it.
TORCH_DEFAULT_THREADS = torch.get_num_threads()

Row = tuple[str, str, str]
rows: list[Row] = []
#: Backbone name -> model-alone images/s, for the header's share of the machine's peak.
model_alone: dict[str, float] = {}


def add(section: str, case: str, value: str) -> None:
    rows.append((section, case, value))
    print(f"  {section} | {case} | {value}", file=sys.stderr, flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


# --- images -------------------------------------------------------------------------------
def image_folder(tmp: Path, photos: Path) -> tuple[Path, Path, str]:
    """(folder, document root, description); the photos in place, else generated ones."""
    if photos.is_dir():
        photos = photos.resolve()
        return photos, photos.parent, f"{photos} (read in place)"
    folder = tmp / "files" / "generated"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(400):
        base = rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((500, 500), Image.Resampling.BICUBIC)
        img.save(folder / f"img{i}.jpg", quality=int(rng.integers(20, 95)))
    return folder, folder.parent, "400 generated 500x500 JPEGs (clive-dev not present)"


def clive_mos(paths: list[Path]) -> np.ndarray:
    """Human MOS of the photos (labels.csv beside their folder), or a synthetic score when absent."""
    table = paths[0].parent.parent / "labels.csv"
    if not table.exists():
        return np.random.default_rng(0).uniform(0, 100, len(paths))
    with table.open() as f:
        by_stem = {Path(r["image"]).stem: float(r["mos"]) for r in csv.DictReader(f)}
    return np.array([by_stem.get(p.stem, 50.0) for p in paths])


# --- 1. extraction ------------------------------------------------------------------------
def bench_extraction(name: str, backbone: Any, paths: list[Path], cache_dir: Path, reps: int,
                     runtime: str = DEFAULTS.runtime) -> None:
    """Cold (empty feature cache) and cached extraction, and the model alone, with ``runtime``;
    ONNX Runtime's graphs are exported before the timed runs (their cost is its own row)."""
    note = f"{len(paths)} images"
    label = f"{name} [{runtime}]"
    cold, cached = [], []
    cache = cache_dir / f"{name}-{runtime}"
    warm = FeatureExtractor(backbone, cache_dir=cache, runtime=runtime)
    export_s, _ = timed(lambda: warm.extract(paths[: 2 * MIN_IMAGES], progress=False))  # warm-up, graphs
    for _ in range(reps):
        empty_feature_cache(cache)
        extractor = FeatureExtractor(backbone, cache_dir=cache, runtime=runtime)
        cold.append(timed(lambda: extractor.extract(paths, progress=False))[0])
        again = FeatureExtractor(backbone, cache_dir=cache, runtime=runtime)
        cached.append(timed(lambda: again.extract(paths, progress=False))[0])
    # Model alone: the same images, already decoded and preprocessed in memory, one forward each
    # (as the pipeline runs them at this size), through the graphs exported above.
    extractor = FeatureExtractor(backbone, cache_dir=cache, runtime=runtime)
    tensors = [backbone.preprocess(load_image(p, extractor.max_side)) for p in paths]
    extractor._forward(tensors[:1])
    alone = [timed(lambda: [extractor._forward([t]) for t in tensors])[0] for _ in range(reps)]
    n = len(paths)
    cold_ips, cached_ips, alone_ips = (n / statistics.median(times) for times in (cold, cached, alone))
    add("extraction", f"{label}, cold (decode + model, empty cache), {note}", f"{cold_ips:.1f} img/s")
    add("extraction", f"{label}, cached", f"{cached_ips:.0f} img/s")
    add("extraction", f"{label}, model alone (in-memory tensors)", f"{alone_ips:.1f} img/s")
    add("extraction", f"{label}, pipeline / model alone", f"{cold_ips / alone_ips:.0%} (target >= 80%)")
    if runtime == "onnxruntime":
        add("extraction", f"{label}, first {2 * MIN_IMAGES} images with an empty cache (graphs exported)",
            f"{export_s:.1f} s")
    model_alone[label] = alone_ips


def flops_header(backbone: Any, paths: list[Path]) -> str:
    """The backbone's FLOPs at the photos' typical size (torch's FlopCounterMode), the machine's
    float32 peak (a 2,048² matrix product, torch's default threads) and the model-alone rate as
    a share of it."""
    from torch.utils.flop_counter import FlopCounterMode

    sizes = [tuple(backbone.preprocess(load_image(p, DEFAULTS.max_side)).shape) for p in paths[:50]]
    shape = max(set(sizes), key=sizes.count)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        backbone(torch.zeros((1, *shape)))
    flops = counter.get_total_flops()
    torch.set_num_threads(TORCH_DEFAULT_THREADS)
    a = torch.rand(2048, 2048)
    torch.mm(a, a)
    seconds, _ = timed(lambda: [torch.mm(a, a) for _ in range(10)])
    peak = 10 * 2 * 2048**3 / seconds
    line = (f"{backbone.name}: {flops / 1e9:.2f} GFLOP per image at {shape[2]}x{shape[1]} (FlopCounterMode); "
            f"machine float32 peak {peak / 1e9:.0f} GFLOP/s (2048x2048 matmul, {TORCH_DEFAULT_THREADS} threads)")
    if f"{backbone.name} [{DEFAULTS.runtime}]" in model_alone:
        rate = model_alone[f"{backbone.name} [{DEFAULTS.runtime}]"] * flops
        line += f"; model alone {rate / 1e9:.0f} GFLOP/s = {rate / peak:.0%} of that peak"
    return line


def empty_feature_cache(cache: Path) -> None:
    """Remove the cached features, keep ONNX Runtime's exported graphs."""
    for entry in cache.iterdir() if cache.is_dir() else ():
        if entry.name != "onnx":
            shutil.rmtree(entry)


def bench_contention(paths: list[Path], folder: Path, backbone: str) -> None:
    """Cold extraction while one CPU-bound process runs beside it, with torch's default threads
    (one per core), one thread, and the governor (``features/threads.py``), against the fair
    share: the idle machine's throughput times the share of cores the competitor leaves; then the
    same for ONNX Runtime with the governor's threads, against its own idle rate."""
    cores = len(os.sched_getaffinity(0))
    torch_default = TORCH_DEFAULT_THREADS

    def throughput(threads: int | None, runtime: str = "pytorch") -> float:
        cache = folder / "contention" if runtime == "onnxruntime" else None  # graphs only: cold features

        def make() -> FeatureExtractor:
            return FeatureExtractor(backbone, num_threads=threads, runtime=runtime, cache_dir=cache)

        make().extract(paths[: 2 * MIN_IMAGES], progress=False)  # warm-up (graphs, the governor's first look)
        if cache is not None:
            empty_feature_cache(cache)
        extractor = make()
        return len(paths) / timed(lambda: extractor.extract(paths, progress=False))[0]

    idle = throughput(torch_default)
    idle_onnx = throughput(None, "onnxruntime")
    share = idle * (cores - 1) / cores if cores > 1 else idle / 2
    share_onnx = idle_onnx * share / idle
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1.0)
        results = {label: throughput(threads) for label, threads in (
            (f"torch's default ({torch_default} threads)", torch_default), ("1 thread", 1),
            ("the governor (MOS_TORCH_THREADS=0)", None))}
        onnx = throughput(None, "onnxruntime")
    finally:
        competitor.kill()
        competitor.wait()
    torch.set_num_threads(torch_default)
    note = f"{len(paths)} images, one CPU-bound process beside it"
    add("contention", f"idle machine, torch's default ({torch_default} threads), {len(paths)} images",
        f"{idle:.1f} img/s")
    add("contention", f"fair share: idle x {cores - 1}/{cores} cores", f"{share:.1f} img/s")
    for label, ips in results.items():
        add("contention", f"{label}, {note}", f"{ips:.1f} img/s = {ips / share:.0%} of the fair share (target >= 80%)")
    add("contention", f"onnxruntime with the governor's threads (the default): idle / {note}",
        f"{idle_onnx:.1f} / {onnx:.1f} img/s = {onnx / share_onnx:.0%} of its fair share (target >= 80%)")


def bench_ray(paths: list[Path], folder: Path, backbone: str) -> None:
    """``features --ray`` on a local Ray cluster with 1 and 2 workers (one thread each), cold
    feature store, ONNX graphs exported beforehand, against this process's extraction. Times
    include starting the actors (loading the backbone), not starting Ray."""
    try:
        import ray
    except ImportError:
        add("ray", "features --ray", "not run: Ray is not installed (pip install 'ray[data]')")
        return
    from ..features.precompute import extract_locally, extract_with_ray

    cache = folder / "ray-cache"
    config = dataclasses.replace(Config(), cache_dir=cache, backbone=backbone)
    FeatureExtractor(backbone, cache_dir=cache).extract(paths[: 2 * MIN_IMAGES], progress=False)  # the graphs
    empty_feature_cache(cache)
    here = len(paths) / extract_locally(paths, config, progress=False).seconds
    rates = {}
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        for workers in (1, 2):
            empty_feature_cache(cache)
            rates[workers] = len(paths) / extract_with_ray(paths, config, workers, progress=False).seconds
    finally:
        ray.shutdown()
    note = f"{len(paths)} images, cold store"
    add("ray", f"this process (features, no --ray), {note}", f"{here:.1f} img/s")
    for workers, ips in rates.items():
        add("ray", f"features --ray, {workers} worker(s) on a local cluster, {note}", f"{ips:.1f} img/s")
    add("ray", "2 workers / 1 worker", f"{rates[2] / rates[1]:.2f}x")


def float16_check(backbone: Any, paths: list[Path]) -> None:
    """KNN predictions on raw float32 features vs the float16 the cache stores."""
    with torch.inference_mode():
        raw = np.stack([
            backbone(backbone.preprocess(Image.open(p).convert("RGB"))[None]).float().numpy()[0]
            for p in paths
        ])
    mos = clive_mos(paths)
    half = len(paths) // 2
    preds = []
    for X in (raw, raw.astype(np.float16).astype(np.float32)):
        knn = PREDICTORS.create("knn").fit(X[:half], mos[:half])
        preds.append(knn.predict(X[half:]))
    diff = np.abs(preds[0] - preds[1])
    add("cache", f"float16 vs float32 features: KNN on {half} labels, {len(paths) - half} predicted",
        f"max abs diff {diff.max():.4f}, mean {diff.mean():.5f} MOS points (0-100 scale)")


def bench_disk(cache: Path, images: int) -> None:
    files = [p for p in cache.rglob("*") if p.suffix in (".vec", ".idx")]
    blocks = sum(p.stat().st_blocks * 512 for p in files) / images
    size = sum(p.stat().st_size for p in files) / images
    add("cache", f"feature store on disk per image (float16, {len(files)} shard files for {images} images)",
        f"{size / 1024:.2f} KB, {blocks / 1024:.2f} KB allocated -> 100k images "
        f"{blocks * 1e5 / 1e9:.2f} GB (target <= 1 GB)")


def bench_store(n: int, dim: int = FEATURE_DIM, lookups: int = 100_000) -> None:
    """``n`` synthetic float16 vectors written, the index loaded by a fresh reader, random
    lookups; bytes per image on disk. The store's own folder is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="mos-store-") as folder:
        rng = np.random.default_rng(0)
        keys = rng.integers(0, 256, (n, 32), dtype=np.uint8)
        block = rng.standard_normal((1024, dim)).astype(np.float16)
        store = FeatureStore(Path(folder))
        started = time.perf_counter()
        for i in range(n):
            store.put(keys[i].tobytes(), block[i % len(block)])
        store.close()
        written = time.perf_counter() - started
        files = list(Path(folder).iterdir())
        size = sum(p.stat().st_size for p in files)
        opened, reader = timed(lambda: FeatureStore(Path(folder)))
        picks = rng.integers(0, n, lookups)
        looked, found = timed(lambda: sum(reader.get(keys[i].tobytes()) is not None for i in picks))
        index = (reader._keys.nbytes + reader._loc.nbytes) / 1e6
    add("store", f"{n:,} vectors x {dim} (float16): write, one writer", f"{n / written:,.0f} vectors/s "
        f"({size / written / 1e6:.0f} MB/s), {len(files)} files")
    add("store", "bytes on disk per vector", f"{size / n:,.0f} ({2 * dim} of vector + 48 of index)")
    add("store", "a fresh reader loads the index", f"{opened:.1f} s")
    add("store", f"random lookups ({lookups:,}, memory-mapped reads)", f"{lookups / looked:,.0f} /s, {found:,} found")
    add("store", "the reader's index in memory", f"{index:.0f} MB ({index * 1e6 / n:.0f} bytes per vector)")


# --- 2. seed ------------------------------------------------------------------------------
def bench_seed(client: LabelStudioClient, folder: Path, root: Path, cache: Path, backbone: str) -> int:
    project = 0
    for label, title in (("cold (empty feature cache)", "bench cold"), ("warm feature cache", "bench warm")):
        options = SeedOptions(folder=folder, document_root=root, title=title,
                              features=Config(cache_dir=cache, backbone=backbone), progress=False)
        seconds, report = timed(lambda: seed_project(client, options))
        project = report.project_id
        add("seed", f"{report.n_imported} images end to end, {label}", f"{seconds:.1f} s")
    export_s, tasks = timed(lambda: client.export_tasks(project))
    add("retrain", f"fetch: export of a {len(tasks)}-task project from Label Studio", f"{export_s * 1000:.0f} ms")
    return project


def bench_big_export(client: LabelStudioClient, urls: list[str], n: int) -> None:
    """A project of n annotated tasks (image URLs reused), exported as a retrain fetches it."""
    project = client.create_project(f"bench export {n}", NUMBER_CONFIG, 1)
    tasks = [{"data": {"image": urls[i % len(urls)]}, "annotations": [{"result": number_result(50)}]}
             for i in range(n)]
    client.import_tasks(project, tasks)
    times = [timed(lambda: client.export_tasks(project))[0] for _ in range(3)]
    add("retrain", f"fetch: export of a {n}-task annotated project from Label Studio (median of 3)",
        f"{statistics.median(times) * 1000:.0f} ms")


def bench_latency(client: LabelStudioClient, settings: LabelStudioSettings, root: Path, cache: Path,
                  urls: list[str], logs: Path, sizes: tuple[int, ...] = (50, 500, 3000, 5000), samples: int = 10,
                  unrated: int = 0) -> None:
    """Annotation posted to Label Studio -> the backend serves a model that knows it, over HTTP
    with real processes: per project size, ``samples`` annotations one at a time, each timed
    until the backend's /status shows the next model version. ``unrated``: tasks nobody rates
    (each model's predictions for them are stored in Label Studio meanwhile)."""
    backend = start_backend({"LABEL_STUDIO_URL": settings.url, "LABEL_STUDIO_API_KEY": settings.token,
                             "LOCAL_FILES_DOCUMENT_ROOT": str(root), "MOS_CACHE_DIR": str(cache),
                             "MOS_STATE_DIR": str(logs / "latency-state")}, free_port(), logs / "latency-backend.log")
    headers = {"Authorization": f"Token {settings.token}"}
    scores = np.random.default_rng(0).uniform(0, 100, max(sizes) + samples)

    def served(project: int) -> dict[str, Any]:
        return requests.get(f"{backend.url}/status", timeout=30).json()["projects"].get(str(project)) or {}

    try:
        for size in sizes:
            project = client.create_project(f"bench latency {size}", NUMBER_CONFIG, 1)
            ids = client.import_tasks(project, [
                {"data": {"image": urls[i % len(urls)]},
                 **({"annotations": [{"result": number_result(int(scores[i]))}]} if i < size else {})}
                for i in range(size + samples + unrated)])
            client.add_ml_backend(project, backend.url)
            deadline = time.monotonic() + 600
            while served(project).get("n_labels") != size and time.monotonic() < deadline:
                time.sleep(0.2)
            latencies, fits = [], []
            for k in range(samples):
                before = served(project).get("model_version")
                started, wall = time.perf_counter(), time.time()
                # Label Studio answers the rater's POST only once the backend answered its webhook
                # (up to MOS_WEBHOOK_WAIT): posted from a thread, the polling sees the model first.
                post = threading.Thread(target=requests.post, args=(
                    f"{settings.url}/api/tasks/{ids[size + k]}/annotations",), kwargs=dict(
                    headers=headers, timeout=60,
                    json={"result": number_result(int(scores[size + k])), "was_cancelled": False}))
                post.start()
                while ((now := served(project)).get("model_version") == before
                       and time.perf_counter() - started < 120):
                    time.sleep(0.01)
                latencies.append(time.perf_counter() - started)
                post.join()
                fits.append((now["train_ms"] / 1000, now["trained_at"] - now["train_ms"] / 1000 - wall))
                time.sleep(0.5)  # let the publish of this version finish before the next annotation
            p50, p99 = np.percentile(latencies, [50, 99]) * 1000
            fit, before_fit = (np.median([f[i] for f in fits]) * 1000 for i in (0, 1))
            add("latency", f"annotation posted -> new model served, {size:,} labels ({samples} annotations"
                           + (f"; {unrated:,} more tasks unrated" if unrated else "") + ")",
                f"p50 {p50:.0f} ms / p99 {p99:.0f} ms" + (" (target p50 <= 1 s)" if size == max(sizes) else "")
                + f"; p50 {before_fit:.0f} ms until the backend has the rated task (Label Studio's own work, "
                  f"its webhook, the task fetch), {fit:.0f} ms fit and save")
    finally:
        backend.stop()


# --- 3. predict ---------------------------------------------------------------------------
def write_state(state_dir: Path, project: int, urls: list[str], n_labels: int) -> None:
    mos = np.random.default_rng(project).uniform(0, 100, n_labels)
    labels = {str(1000 + i): {"image": urls[i % len(urls)], "mos": float(mos[i]), "n": 1} for i in range(n_labels)}
    StateStore(state_dir).save(ProjectState(project, version=1, model_version=f"{DEFAULTS.predictor}-v1",
                                            predictor=DEFAULTS.predictor,
                                            predictor_params=DEFAULTS.params_for(DEFAULTS.predictor),
                                            labels=labels))


def bench_predict(tmp: Path, root: Path, cache: Path, urls: list[str], requests_per_case: int, backbone: str) -> None:
    state_dir = tmp / "predict-state"
    cases = {1: 50, 2: 1000}
    for project, n_labels in cases.items():
        write_state(state_dir, project, urls, n_labels)
    env = {"LOCAL_FILES_DOCUMENT_ROOT": str(root), "MOS_STATE_DIR": str(state_dir), "MOS_CACHE_DIR": str(cache),
           "LABEL_STUDIO_URL": "http://127.0.0.1:9", "LABEL_STUDIO_API_KEY": "unused", "MOS_LOG_LEVEL": "WARNING",
           "MOS_BACKBONE": backbone}
    backend = start_backend(env, free_port(), tmp / "logs" / "backend.log")
    config = NUMBER_CONFIG
    try:
        session = requests.Session()
        for project, n_labels in cases.items():
            for n_tasks in (1, 10):
                def body(i: int) -> dict[str, Any]:
                    tasks = [{"id": 10 + j, "project": project,
                              "data": {"image": urls[(i * n_tasks + j) % len(urls)]}} for j in range(n_tasks)]
                    return {"project": f"{project}.1700000000", "label_config": config, "tasks": tasks}

                for i in range(len(urls) // n_tasks + 1):  # warm-up: model loaded, every image seen
                    session.post(f"{backend.url}/predict", json=body(i), timeout=120).raise_for_status()
                latencies = []
                for i in range(requests_per_case):
                    seconds, response = timed(lambda: session.post(f"{backend.url}/predict", json=body(i), timeout=60))
                    response.raise_for_status()
                    assert len(response.json()["results"][0]["result"]) == 1
                    latencies.append(seconds * 1000)
                p50, p99 = np.percentile(latencies, [50, 99])
                add("predict", f"/predict over HTTP, {n_tasks} task(s), {n_labels} labels, cached "
                    f"({requests_per_case} requests)", f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
        status = Path(f"/proc/{backend.process.pid}/status").read_text()
        hwm = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
        add("memory", "backend process peak resident memory (after the predict runs)", f"{int(hwm) / 1024:.0f} MB")
    finally:
        backend.stop()


# --- 4. retrain ---------------------------------------------------------------------------
def bench_retrain(tmp: Path, root: Path, cache: Path, urls: list[str], reps: int, backbone: str) -> None:
    """A rating's webhook -> the retrained model in place, in process (Label Studio's part is the
    latency section's): the rated task fetched from a stand-in, votes, fit, state save."""
    StandIn = export_only_label_studio([], project_id=7)
    config = Config(label_studio_url="http://127.0.0.1:9", label_studio_api_key="unused", document_root=root,
                    state_dir=tmp / "retrain-state", cache_dir=cache, publish="off", webhook_wait=600,
                    backbone=backbone)
    service = MOSService(config, client_factory=StandIn)
    service.start()
    service.model(7)  # the project as Label Studio's /setup registers it
    rng = np.random.default_rng(0)
    try:
        for n in (50, 500, 1500, 3000, 5000):  # 1,500: the dual system at Lite0's 4,029 columns
            scores = rng.uniform(0, 100, n + reps)

            def tasks(n_labels: int, n: int = n, scores: np.ndarray = scores) -> list[dict[str, Any]]:
                return [{"id": i + 1, "data": {"image": urls[i % len(urls)]},
                         "annotations": [{"id": i + 1, "completed_by": 1, "was_cancelled": False,
                                          "result": number_result(float(scores[i]))}] if i < n_labels else []}
                        for i in range(n + reps)]
            StandIn.tasks = tasks(n)
            service.train(7)  # a full read: the features of every image now in memory, as in a running backend
            full_fit = service.model(7).state.train_ms  # a full fit, as after every 5 % of changed labels
            fits, totals = [], []
            for k in range(reps):
                StandIn.tasks = tasks(n + k + 1)  # one more annotation, named by its webhook
                event = {"action": "ANNOTATION_CREATED", "task": {"id": n + k + 1}, "project": {"id": 7}}
                seconds, answer = timed(lambda event=event: service.webhook(event))
                assert answer["status"] == "trained", answer
                totals.append(seconds * 1000)
                fits.append(service.model(7).state.train_ms)
            add("retrain", f"webhook of one more annotation -> new model, {n} labels (features cached, "
                f"Label Studio a stand-in)", f"{statistics.median(totals):.0f} ms ({config.predictor}: task, "
                f"votes, fit, state save; fit part {statistics.median(fits):.0f} ms; median of {reps}; "
                f"the full fit before them {full_fit:.0f} ms)")
    finally:
        service.stop()


def bench_prior(backbone: str, n: int = 5000) -> None:
    """The quality prior's step: its columns (its prediction and its kind priors') for every
    labelled image at each refit, against its prediction alone."""
    from ..features import BACKBONES
    from ..prediction.prior import resolve_prior

    prior = resolve_prior("auto", BACKBONES.get(backbone).dim)
    assert prior is not None
    X = np.random.default_rng(0).standard_normal((n, len(prior.coef)), dtype=np.float32)
    results = []
    for kinds in (False, True, False, True):  # alternated, so that drift hits both alike
        results.append(statistics.median(timed(lambda k=kinds: prior.columns(X, k))[0] for _ in range(5)))
    one, kinds = min(results[0::2]), min(results[1::2])
    add("retrain", f"quality prior on {n:,} x {len(prior.coef)} features: its prediction alone / with its "
        f"{len(prior.kinds)} kind priors (best of 2 medians of 5)",
        f"{one * 1000:.1f} / {kinds * 1000:.1f} ms ({kinds / n * 1e6:.2f} µs per image with them)")


# --- 5. selection -------------------------------------------------------------------------
def selection_child(name: str, n: int) -> None:
    """Runs in a subprocess so that its peak memory is its own."""
    from ..selection import SELECTORS

    X = np.empty((n, FEATURE_DIM), dtype=np.float32)
    for start, block in zip(range(0, n, 5000), synthetic_rows(n), strict=True):
        X[start : start + len(block)] = block
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds, selector = timed(lambda: SELECTORS.create(name, {"n_select": 100}).fit(X))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mb": peak / 1024, "base_mb": base / 1024,
                      "selected": len(selector.selected_)}))


def synthetic_rows(n: int, block: int = 5000) -> Any:
    """Blocks of ``n`` clustered synthetic feature rows (200 centres plus noise), seeded."""
    rng = np.random.default_rng(0)
    centres = rng.gamma(2.0, 0.5, (200, FEATURE_DIM)).astype(np.float32)
    for start in range(0, n, block):
        rows = centres[rng.integers(0, 200, min(block, n - start))]
        yield rows + rng.standard_normal(rows.shape, dtype=np.float32) * 0.3


def selection_file_child(name: str, path: str) -> None:
    """A selector on a float16 ``.npy`` of more rows than memory should hold, memory-mapped; run
    in a subprocess. Peak memory is sampled as the process's own (anonymous) resident memory and
    the file's pages resident beside it (page cache the kernel may reclaim)."""
    from ..selection import SELECTORS

    X = np.load(path, mmap_mode="r")
    peaks = {"RssAnon": 0, "RssFile": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            for line in Path("/proc/self/status").read_text().splitlines():
                key = line.split(":")[0]
                if key in peaks:
                    peaks[key] = max(peaks[key], int(line.split()[1]))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    seconds, selector = timed(lambda: SELECTORS.create(name, {"n_select": 100}).fit(X))
    done.set()
    sampler.join()
    print(json.dumps({"seconds": seconds, "anon_mb": peaks["RssAnon"] / 1024, "file_mb": peaks["RssFile"] / 1024,
                      "selected": len(selector.selected_)}))


def selection_run(case: str, call: str, timeout: float) -> dict[str, Any] | None:
    """Run ``call`` (a child function of this module) in its own process and return the JSON it
    prints last; on timeout, a row saying so and None."""
    child = f"from ml_backend.dev.benchmark import selection_child, selection_file_child; {call}"
    try:
        out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=timeout,
                             check=True)
    except subprocess.TimeoutExpired:
        add("selection", case, f"did not finish within {timeout:.0f} s")
        return None
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench_selection_file(n: int, folder: Path, timeout: float) -> None:
    """``faiss-kmeans`` and ``faiss-ted`` on ``n`` synthetic rows written to disk as float16
    (``n`` x 8 KB), each in its own process."""
    path = folder / "rows.npy"
    rows = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, FEATURE_DIM))
    written = 0
    for block in synthetic_rows(n):
        rows[written : written + len(block)] = block
        written += len(block)
    rows.flush()
    del rows
    try:
        for name in ("faiss-kmeans", "faiss-ted"):
            case = f"{name} (n_select=100), {n:,} x {FEATURE_DIM} float16, memory-mapped from disk"
            r = selection_run(case, f"selection_file_child({name!r}, {str(path)!r})", timeout)
            if r is not None:
                add("selection", case, f"{r['seconds']:.1f} s, peak {r['anon_mb'] / 1024:.2f} GB of its own memory "
                    f"(and {r['file_mb'] / 1024:.2f} GB of the file's pages resident), {r['selected']} picked")
    finally:
        path.unlink()


def bench_selection(sizes: list[int], skip: set[tuple[str, int]], timeout: float) -> None:
    for n in sizes:
        for name in ("ted", "faiss-ted", "kmeans", "faiss-kmeans", "kcenter", "dbscan", "random"):
            case = f"{name} (n_select=100), {n:,} x {FEATURE_DIM} float32"
            if (name, n) in skip:
                add("selection", case, "skipped (--quick)")
                continue
            r = selection_run(case, f"selection_child({name!r}, {n})", timeout)
            if r is not None:
                add("selection", case, f"{r['seconds']:.1f} s, peak {r['peak_mb'] / 1024:.2f} GB "
                    f"(of which input + interpreter {r['base_mb'] / 1024:.2f} GB), {r['selected']} picked")


# --- main ---------------------------------------------------------------------------------
def run_benchmark(quick: bool = False, n_images: int = 400, resnet_images: int = 100, export_tasks: int = 5000,
                  skip: frozenset[str] = frozenset(), photos: Path = CLIVE, store_vectors: int = 0,
                  selection_rows: int = 0, backbone: str = DEFAULTS.backbone) -> None:
    """Every measurement, then the table on stdout (progress lines on stderr). ``backbone`` makes the
    features of the extraction, seed, predict and retrain rows (selection's synthetic rows keep
    ``FEATURE_DIM``)."""
    reps = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="mos-bench-") as tmp_name:
        tmp = Path(tmp_name)
        folder, root, described = image_folder(tmp, photos)
        paths, _ = list_images(folder)
        urls = [local_files_url(p, root) for p in paths]
        cache = tmp / "features"
        print(f"images: {described}", file=sys.stderr)
        header = ""
        if "extraction" not in skip:
            eff = get_backbone(backbone)
            for runtime in RUNTIMES:
                bench_extraction(backbone, eff, paths[:n_images], tmp / "bench-cache", reps, runtime)
            float16_check(eff, paths[: min(200, n_images)])
            bench_contention(paths[: min(60, n_images)], tmp, backbone)
            header = flops_header(eff, paths)
            weights = tmp / "resnet50-random.pt"
            import torchvision
            torch.save(torchvision.models.resnet50().state_dict(), weights)
            resnet = get_backbone("resnet50", {"weights_path": str(weights)})
            bench_extraction("resnet50 (random weights: real ones are not available offline)", resnet,
                             paths[:resnet_images], tmp / "bench-cache", 1)
        if "ray" not in skip:
            bench_ray(paths[:n_images], tmp, backbone)
        FeatureExtractor(backbone, cache_dir=cache).extract(paths, progress=False)  # for predict/retrain
        bench_disk(cache, len(paths))
        if store_vectors:
            bench_store(store_vectors)
        if "seed" not in skip or "latency" not in skip:
            settings = LabelStudioSettings(data_dir=tmp / "ls-data", document_root=root, port=free_port())
            label_studio = start_label_studio(settings, tmp / "logs" / "label-studio.log")
            try:
                client = LabelStudioClient(settings.url, settings.token)
                if "seed" not in skip:
                    bench_seed(client, folder, root, tmp / "seed-cache", backbone)
                    if export_tasks:
                        bench_big_export(client, urls, export_tasks)
                if "latency" not in skip:
                    bench_latency(client, settings, root, cache, urls, tmp / "logs")
            finally:
                label_studio.stop()
        if "predict" not in skip:
            bench_predict(tmp, root, cache, urls, 100 if quick else 300, backbone)
        if "retrain" not in skip:
            bench_prior(backbone)
            bench_retrain(tmp, root, cache, urls, reps, backbone)
        if "selection" not in skip:
            bench_selection([10_000, 100_000], {("dbscan", 100_000)} if quick else set(), timeout=600)
        if selection_rows:
            bench_selection_file(selection_rows, tmp, timeout=1200)

    cores = len(os.sched_getaffinity(0))
    print(f"machine: {cores} CPU cores available ({os.cpu_count()} in the machine), torch's default threads "
          f"{TORCH_DEFAULT_THREADS} (extraction: MOS_TORCH_THREADS=0, the cores left free), "
          f"torch {torch.__version__}, python {sys.version.split()[0]}")
    print(f"images: {described}; medians of {reps} runs unless stated")
    print(f"{header}\n" if header else "")
    print("| Area | Case | Result |\n|---|---|---|")
    for section, case, value in rows:
        print(f"| {section} | {case} | {value} |")
