"""Speed of the similarity predictor: metric pairs per second, and the cost of scoring a project.

Images are random crops of the generated sample dataset, so this runs anywhere; LPIPS uses
../shared/weights/alexnet-features.pth when present (else it is skipped). Scoring 1,000
unlabelled images against 100 labelled ones is extrapolated from a measured subset of queries
(the cost is linear in the number of queries); CNN feature extraction is not included.

    mos-annotator benchmark --suite similarity --queries 20 --threads 1
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..prediction.similarity.metrics import TENSOR_CACHE, build_metric, metric_weights
from ..prediction.similarity.predictor import SimilarityPredictor
from .sample_dataset import make_sample_dataset

#: LPIPS backbone weights beside the repository, from its root.
ALEXNET = Path("../shared/weights/alexnet-features.pth")
PROJECT_QUERIES, PROJECT_LABELS = 1000, 100


def random_crops(folder: Path, count: int, rng: np.random.Generator) -> list[Path]:
    """``count`` distinct images: random 288x288 crops of the sample dataset's 78 images."""
    sources = sorted(p for p in folder.iterdir() if p.suffix in (".png", ".jpg"))
    out = folder / "crops"
    out.mkdir()
    paths = []
    for i in range(count):
        with Image.open(sources[rng.integers(len(sources))]) as image:
            x = rng.integers(image.width - 288 + 1)
            y = rng.integers(image.height - 288 + 1)
            paths.append(out / f"crop{i}.png")
            image.convert("RGB").crop((x, y, x + 288, y + 288)).save(paths[-1])
    return paths


def thumbnails(paths: list[Path]) -> np.ndarray:
    """Cheap stand-in for CNN features (only used to preselect candidates)."""
    return np.stack([np.asarray(Image.open(p).convert("L").resize((8, 8)), float).ravel() for p in paths])


def pairs_per_second(metric: str, size: int, weights: str, batch: int = 20) -> float:
    built = build_metric(metric_weights(metric, 1, 1, 1), "alex", weights)
    a, b = torch.rand(batch, 3, size, size), torch.rand(batch, 3, size, size)
    built(a[:2], b[:2])  # warm-up
    start = time.perf_counter()
    built(a, b)
    return batch / (time.perf_counter() - start)


def run_similarity_benchmark(queries: int = 20, size: int = 256, threads: int = 1, alexnet: Path = ALEXNET) -> None:
    """Pairs per second per metric, then the extrapolated cost of scoring a project."""
    if threads:
        torch.set_num_threads(threads)
    weights = str(alexnet) if alexnet.is_file() else ""
    metrics = ["lpips", "ssim", "ms_ssim", "combined"] if weights else ["ssim", "ms_ssim"]
    if not weights:
        print(f"LPIPS skipped: {alexnet} not found (torchvision's download is not attempted)")
    print(f"torch threads: {torch.get_num_threads()}, comparison size {size} px")

    for metric in metrics:
        print(f"{metric:>9}: {pairs_per_second(metric, size, weights):7.1f} pairs/s")

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_sample_dataset(folder)
        paths = random_crops(folder, PROJECT_LABELS + queries, rng)
        X = thumbnails(paths)
        y = rng.uniform(0, 100, len(paths))
        labelled, queries = slice(0, PROJECT_LABELS), slice(PROJECT_LABELS, None)
        print(f"\nscoring {PROJECT_QUERIES} unlabelled vs {PROJECT_LABELS} labelled images "
              f"(extrapolated from {queries} measured queries; image decoding included)")
        for metric in metrics:
            for n_candidates in (20, 0):
                TENSOR_CACHE.clear()  # queries are new images: their decoding counts
                model = SimilarityPredictor(
                    metric=metric, n_candidates=n_candidates, size=size, lpips_weights=weights
                ).fit(X[labelled], y[labelled], images=paths[labelled])
                start = time.perf_counter()
                model.predict_with_confidence(X[queries], images=paths[queries])
                per_query = (time.perf_counter() - start) / queries
                label = "with preselection (20)" if n_candidates else "without (all 100)   "
                print(f"{metric:>9} {label}: {per_query * PROJECT_QUERIES / 60:6.1f} min "
                      f"({per_query * 1000:.0f} ms/query)")

