"""``mos-annotator features``: the feature cache filled ahead of time, here and by Ray actors."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

from ml_backend.config import Config
from ml_backend.dev.sample_dataset import make_sample_dataset
from ml_backend.features.extractor import FeatureExtractor, FeatureSet
from ml_backend.features.images import list_images
from tests.helpers import run_command, shared_path


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sample scene (13 images of several sizes) and a file that is not an image."""
    root = tmp_path_factory.mktemp("images")
    make_sample_dataset(root, scenes=1)
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def _vectors(paths: list[Path], cache: Path) -> dict[Path, np.ndarray]:
    """The cached vector of each path (a cache miss would compute it: checked by the caller)."""
    result = FeatureExtractor(cache_dir=cache).extract(paths, progress=False)
    assert result.n_computed == 0, "a vector was missing from the cache"
    return dict(zip(result.paths, result.features, strict=True))


def _assert_within_one_float16_step(cached: dict[Path, np.ndarray], fresh: FeatureSet) -> None:
    """Each cached vector equals the fresh one up to one float16 step (at most 2**-10 of the value):
    float32 results that differ in the last bits between processes may round to neighbouring float16."""
    for path, row in zip(fresh.paths, fresh.features, strict=True):
        np.testing.assert_allclose(cached[path], row, rtol=1e-3, atol=1e-3)


def test_the_features_command_fills_the_cache_and_a_second_run_computes_nothing(folder: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = run_command("features", str(folder), "--cache-dir", str(cache), "--no-progress")
    assert first.returncode == 0, first.stderr
    assert "13 of 14 images in the cache" in first.stdout and "13 computed now" in first.stdout
    assert "broken.jpg: cannot identify image file" in first.stdout
    again = run_command("features", str(folder), "--cache-dir", str(cache), "--no-progress")
    assert "0 computed now, 13 already there" in again.stdout
    paths = list_images(folder)[0]
    fresh = FeatureExtractor(cache_dir=tmp_path / "other").extract(paths, progress=False)
    cached = _vectors(paths, cache)
    _assert_within_one_float16_step(cached, fresh)


def test_bad_workers_and_a_missing_folder_are_one_line_errors(tmp_path: Path) -> None:
    bad = run_command("features", str(tmp_path), "--ray", "--workers", "0")
    assert bad.returncode == 1 and bad.stderr.strip() == "error: --workers must be at least 1, got 0"
    missing = run_command("features", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "image folder not found" in missing.stderr


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster: 2 CPUs for the actors and one for the reads."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ray[data]')")
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_two_ray_workers_store_the_features_this_process_computes(folder: Path, tmp_path: Path, ray_cluster) -> None:
    """On the sample (PyTorch: too few images per shape for an ONNX graph) and on 60 clive-dev
    photos (one shape: each actor exports and runs its ONNX graph) the actors' vectors are the ones
    this process computes; unusable files are reported by name and nothing else is lost."""
    from ml_backend.features.precompute import extract_with_ray

    config = dataclasses.replace(Config(), cache_dir=tmp_path / "ray-cache")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    sample = list_images(folder)[0]
    report = extract_with_ray([*sample, fifo], config, workers=2, progress=False)
    assert report.workers == 2 and report.n_images == 13 and report.n_computed == 13
    assert report.failed == {folder.resolve() / "broken.jpg": "cannot identify image file (not an image?)",
                             fifo.resolve(): "not a regular file"}

    clive = list_images(shared_path("data", "clive-dev", "images"))[0][:60]
    assert extract_with_ray(clive, config, workers=2, progress=False).n_computed == 60
    readable = [p for p in sample if p.name != "broken.jpg"] + clive
    here = FeatureExtractor(cache_dir=tmp_path / "here-cache").extract(readable, progress=False)
    by_ray = _vectors(readable, config.cache_dir)
    _assert_within_one_float16_step(by_ray, here)
    assert extract_with_ray(clive, config, workers=2, progress=False).n_computed == 0  # resumes
