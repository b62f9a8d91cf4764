import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from skimage import data

from ml_backend.dev.sample_dataset import make_sample_dataset
from ml_backend.features.images import load_image
from ml_backend.prediction import PREDICTORS
from ml_backend.prediction.similarity.metrics import (
    LPIPSSimilarity,
    MSSSIMSimilarity,
    SSIMSimilarity,
    TensorCache,
    build_metric,
    image_to_tensor,
    metric_weights,
    to_comparison_size,
)
from ml_backend.prediction.similarity.predictor import SimilarityPredictor
from tests.helpers import shared_path


def as_batch(*images: Image.Image) -> torch.Tensor:
    return torch.stack([image_to_tensor(im) for im in images]).float() / 255.0


def alexnet_weights() -> str:
    return str(shared_path("weights", "alexnet-features.pth"))


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Small convolutions on shared, loaded cores are many times faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    """192 px: above the 160 px MS-SSIM needs for its 5 scales, small enough to be fast."""
    return to_comparison_size(Image.fromarray(data.astronaut()), 192)


def blur_ladder(image: Image.Image) -> list[Image.Image]:
    return [image.filter(ImageFilter.GaussianBlur(sigma)) for sigma in (0.5, 1.5, 3.0, 6.0)]


def noise_ladder(image: Image.Image) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    pixels = np.asarray(image, dtype=float)
    return [
        Image.fromarray(np.clip(pixels + rng.normal(0, s, pixels.shape), 0, 255).astype(np.uint8))
        for s in (5, 15, 40, 80)
    ]


def test_lpips_alex_reproduces_the_reference_distances() -> None:
    folder = shared_path("weights", "lpips-examples")
    ref, p0, p1 = (as_batch(load_image(folder / f"ex_{n}.png")) for n in ("ref", "p0", "p1"))
    metric = LPIPSSimilarity("alex", alexnet_weights())
    # The reference implementation prints 0.722 and 0.137 (these weights give 0.7219, 0.1376).
    assert metric.distance(ref, p0)[0] == pytest.approx(0.722, abs=1e-3)
    assert metric.distance(ref, p1)[0] == pytest.approx(0.137, abs=1e-3)
    np.testing.assert_allclose(metric(ref, p1), 1 - metric.distance(ref, p1))


@pytest.mark.parametrize("metric", [SSIMSimilarity(), MSSSIMSimilarity()], ids=["ssim", "ms_ssim"])
@pytest.mark.parametrize("ladder", [blur_ladder, noise_ladder], ids=["blur", "noise"])
def test_ssim_metrics_identity_symmetry_and_order(metric, ladder, astronaut: Image.Image) -> None:
    distorted = ladder(astronaut)
    reference = as_batch(*[astronaut] * len(distorted))
    batch = as_batch(*distorted)
    np.testing.assert_allclose(metric(reference, reference), 1.0, atol=1e-6)
    forward = metric(reference, batch)
    np.testing.assert_allclose(forward, metric(batch, reference), atol=1e-6)
    assert np.all(np.diff(forward) < 0), forward  # more distortion, less similar
    assert np.all((forward >= 0) & (forward < 1))


def test_combined_with_one_weight_equals_that_metric(astronaut: Image.Image) -> None:
    reference = as_batch(*[astronaut] * 4)
    batch = as_batch(*blur_ladder(astronaut))
    ssim_only = build_metric(metric_weights("combined", 0, 1, 0))
    np.testing.assert_allclose(ssim_only(reference, batch), SSIMSimilarity()(reference, batch))
    assert list(ssim_only.parts) == ["ssim"]  # zero-weight metrics are not even built
    weights = alexnet_weights()
    lpips_only = build_metric(metric_weights("combined", 2.5, 0, 0), "alex", weights)
    expected = LPIPSSimilarity("alex", weights)(reference, batch)
    np.testing.assert_allclose(lpips_only(reference, batch), expected, rtol=1e-6)
    half = build_metric(metric_weights("combined", 1, 1, 0), "alex", weights)(reference, batch)
    np.testing.assert_allclose(half, (expected + SSIMSimilarity()(reference, batch)) / 2, rtol=1e-6)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"metric": "combined", "alpha": -1}, "alpha (weight of lpips) must be >= 0"),
        ({"metric": "ssim", "gamma": "-0.5"}, "gamma (weight of ms_ssim) must be >= 0"),
        ({"metric": "combined", "alpha": 0, "beta": 0, "gamma": 0}, "all 0"),
        ({"metric": "psnr"}, "unknown similarity metric 'psnr'"),
        ({"metric": "ms_ssim", "size": 128}, "size (with this metric) must be an integer >= 161"),
        ({"lpips_net": "resnet"}, "lpips_net must be one of alex, squeeze, vgg"),
        ({"lpips_weights": "/no/such/file.pth"}, "lpips_weights file not found"),
        ({"n_candidates": -1}, "n_candidates must be an integer >= 0"),
        ({"colour": 1}, "unknown parameter 'colour'"),
    ],
)
def test_bad_configuration_fails_when_created(params: dict, message: str) -> None:
    with pytest.raises(ValueError) as info:
        PREDICTORS.create("similarity", params)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_create_predictor_converts_and_keeps_sklearn_params() -> None:
    model = PREDICTORS.create("similarity", {"metric": " combined", "alpha": "1", "gamma": 0, "size": "200"})
    assert isinstance(model, SimilarityPredictor)
    assert model.get_params()["alpha"] == 1.0 and model.size == 200 and model.metric == "combined"


def test_comparison_size_keeps_aspect_and_crops_the_centre() -> None:
    wide = Image.new("RGB", (300, 100), "white")
    wide.paste((255, 0, 0), (0, 0, 100, 100))  # left third red: cropped away
    out = to_comparison_size(wide, 64)
    assert out.size == (64, 64)
    assert np.asarray(out)[..., 1].min() > 240  # only the white centre is left


def test_tensor_cache_is_bounded(tmp_path: Path) -> None:
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.png")
        Image.new("RGB", (80, 80), (i * 60, 0, 0)).save(paths[-1])
    cache = TensorCache(max_bytes=2 * 3 * 64 * 64)
    tensors = [cache.get(p, 64) for p in paths]
    assert len(cache) == 2 and tensors[3].shape == (3, 64, 64)
    assert cache.get(paths[3], 64) is tensors[3]  # a hit returns the stored tensor


@pytest.fixture(scope="module")
def ladders(tmp_path_factory: pytest.TempPathFactory):
    """Two scenes with JPEG/blur/noise ladders; proxy MOS = 100 - 20 * distortion level."""
    folder = tmp_path_factory.mktemp("ladders")
    make_sample_dataset(folder, scenes=2)
    with open(folder / "manifest.csv") as handle:
        rows = list(csv.DictReader(handle))
    paths = [folder / r["image"] for r in rows]
    y = np.array([100.0 - 20 * int(r["level"]) for r in rows])
    # Cheap stand-in for CNN features: a 6x6 grey thumbnail (the test is about the predictor).
    X = np.stack([np.asarray(load_image(p).convert("L").resize((6, 6)), float).ravel() for p in paths])
    return X, y, paths


@pytest.mark.parametrize("metric", ["ssim", "lpips"])
def test_predictor_end_to_end_on_distortion_ladders(ladders, metric: str) -> None:
    X, y, paths = ladders
    params = {"metric": metric, "n_candidates": 4, "n_neighbors": 3, "size": 64}
    if metric == "lpips":
        params["lpips_weights"] = alexnet_weights()
    labelled = np.arange(len(y)) % 3 == 0
    model = PREDICTORS.create("similarity", params)
    model.fit(X[labelled], y[labelled], images=[p for p, m in zip(paths, labelled, strict=True) if m])
    pairs_per_call = []
    metric_fn = model.metric_

    def counting(a, b):
        pairs_per_call.append(len(a))
        return metric_fn(a, b)

    model.metric_ = counting
    queries = [p for p, m in zip(paths, labelled, strict=True) if not m]
    predictions, confidence = model.predict_with_confidence(X[~labelled], images=queries)
    assert np.all(np.isfinite(predictions))
    assert np.all((predictions >= y[labelled].min()) & (predictions <= y[labelled].max()))
    assert np.all((confidence >= 0) & (confidence <= 1))
    assert len(pairs_per_call) == len(queries) and max(pairs_per_call) <= 4
    np.testing.assert_allclose(model.predict(X[~labelled], images=queries), predictions)

    model.set_params(n_candidates=0)  # 0 = compare with every label
    pairs_per_call.clear()
    model.predict_with_confidence(X[:2], images=paths[:2])
    assert pairs_per_call == [labelled.sum()] * 2


def test_fit_needs_one_image_per_row(ladders) -> None:
    X, y, paths = ladders
    with pytest.raises(ValueError, match="3 feature rows but 2 images"):
        SimilarityPredictor(metric="ssim", size=64).fit(X[:3], y[:3], images=paths[:2])
    with pytest.raises(ValueError, match="needs the image files"):  # it compares pixels: images are required
        SimilarityPredictor(metric="ssim", size=64).fit(X[:3], y[:3])
