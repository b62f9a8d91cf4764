"""Full-reference image similarity (LPIPS, SSIM, MS-SSIM) on same-size image tensors.

Every metric maps a batch of pairs ``a, b`` (float tensors ``[B, 3, S, S]`` in [0, 1]) to
similarities in [0, 1], 1 = identical, so they can be averaged with weights and used as
neighbour weights. Images are brought to one comparison size first (``comparison_tensor``),
because full-reference metrics compare pixel-aligned images.
"""
from __future__ import annotations

import functools
import math
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ...errors import ConfigError
from ...features.images import load_image
from ...registry import Registry

LPIPS_NETS = ("alex", "squeeze", "vgg")
#: MS-SSIM with its 11-px window and 5 scales needs the shorter side > (11 - 1) * 2**4 = 160.
MS_SSIM_MIN_SIZE = 161
#: Below this AlexNet/SqueezeNet's deepest LPIPS layers shrink to almost nothing.
MIN_SIZE = 64
#: Preprocessed images kept in memory (uint8; 192 KiB each at 256 px): 256 MiB.
CACHE_BYTES = 256 * 2**20


class SimilarityMetric(Protocol):
    def __call__(self, a: Tensor, b: Tensor) -> np.ndarray: ...


SIMILARITY_METRICS: Registry[SimilarityMetric] = Registry("similarity metric")


# ---- comparison size ---------------------------------------------------------------------------


def to_comparison_size(image: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` (Lanczos, aspect kept), then the centre ``size`` x ``size`` crop.

    Scaling by the shorter side keeps the geometry (stretching would itself read as a
    distortion) and the crop keeps the middle, where the subject usually is; one fixed size
    makes every pair comparable and bounds the cost per pair.
    """
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize(
        (max(size, round(width * scale)), max(size, round(height * scale))),
        Image.Resampling.LANCZOS,
    )
    left = (resized.width - size) // 2
    top = (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def image_to_tensor(image: Image.Image) -> Tensor:
    """RGB PIL image -> uint8 tensor [3, H, W] (uint8 keeps the cache 4x smaller than float)."""
    return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)


class TensorCache:
    """Preprocessed images in memory, keyed by path, file change time and comparison size.

    Least recently used entries go first once ``max_bytes`` is exceeded. Thread-safe: the
    backend trains in a background thread while requests predict.
    """

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, Tensor] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, path: Path | str, size: int) -> Tensor:
        stat = os.stat(path)
        key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size, size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        # Longer side capped at 4x the size: big JPEGs decode at a reduced scale; the shorter
        # side stays >= size unless the aspect ratio exceeds 4:1 (then it is upscaled a little).
        tensor = image_to_tensor(to_comparison_size(load_image(path, max_side=4 * size), size))
        with self._lock:
            if key not in self._items:
                self._items[key] = tensor
                self._bytes += tensor.numel()
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.numel()
        return tensor

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)


#: One cache per process: the backend refits after every rating and reuses what it loaded.
TENSOR_CACHE = TensorCache()


def comparison_batch(paths: list[Path], size: int, cache: TensorCache = TENSOR_CACHE) -> Tensor:
    """Float batch [len(paths), 3, size, size] in [0, 1] for the metrics."""
    return torch.stack([cache.get(p, size) for p in paths]).float() / 255.0


# ---- metrics -----------------------------------------------------------------------------------


def _map_backbone_keys(state: Mapping[str, Tensor], slices: torch.nn.Module) -> dict[str, Tensor]:
    """torchvision ``features`` keys ("features.3.weight" or "3.weight") -> lpips slice keys.

    lpips splits torchvision's ``features`` into ``slice1..sliceN`` that keep the layer indices
    ("slice2.3.weight"), so the owning slice is looked up by the layer index.
    """
    owner = {index: name for name, part in slices.named_children() for index in part._modules}
    mapped = {}
    for key, value in state.items():
        index, rest = key.removeprefix("features.").split(".", 1)
        if index not in owner:
            raise ConfigError(f"backbone weights key {key!r} matches no LPIPS layer")
        mapped[f"{owner[index]}.{index}.{rest}"] = value
    return mapped


@functools.lru_cache(maxsize=4)
def load_lpips(net: str = "alex", weights: str = "") -> torch.nn.Module:
    """LPIPS v0.1 with its shipped linear layers; the backbone from ``weights`` or torchvision.

    ``weights`` is a state dict of torchvision's ``features`` part (see
    ../shared/weights/README.md); empty: torchvision's ImageNet download/cache. Cached, since a
    refit after every rating must not reload the network.
    """
    import lpips

    if not weights:
        return lpips.LPIPS(net=net, version="0.1", verbose=False).eval()
    with warnings.catch_warnings():  # torchvision's deprecation notice for pretrained=False
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net, version="0.1", pnet_rand=True, verbose=False)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.net.load_state_dict(_map_backbone_keys(state, model.net), strict=True)
    return model.eval()


@SIMILARITY_METRICS.register("lpips")
class LPIPSSimilarity:
    """``similarity = clip(1 - d, 0, 1)`` with d the LPIPS distance.

    LPIPS distances of natural images lie in about [0, 0.8] (0 = identical), so 1 - d is a
    similarity that is linear in the distance and needs no extra scale parameter.
    """

    def __init__(self, net: str = "alex", weights: str = "") -> None:
        self.model = load_lpips(net, weights)

    @torch.inference_mode()
    def distance(self, a: Tensor, b: Tensor) -> np.ndarray:
        return self.model(a, b, normalize=True).reshape(-1).double().numpy()

    def __call__(self, a: Tensor, b: Tensor) -> np.ndarray:
        return np.clip(1.0 - self.distance(a, b), 0.0, 1.0)


@SIMILARITY_METRICS.register("ssim")
class SSIMSimilarity:
    """scikit-image SSIM with Wang et al.'s settings (Gaussian window, sigma 1.5), over RGB.

    SSIM lies in [-1, 1]; negative values (anti-correlated structure) count as 0 similarity.
    """

    def __call__(self, a: Tensor, b: Tensor) -> np.ndarray:
        from skimage.metrics import structural_similarity

        a_np = a.permute(0, 2, 3, 1).double().numpy()
        b_np = b.permute(0, 2, 3, 1).double().numpy()
        scores = [
            structural_similarity(
                x, y, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False,
            )
            for x, y in zip(a_np, b_np, strict=True)
        ]
        return np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)


@SIMILARITY_METRICS.register("ms_ssim")
class MSSSIMSimilarity:
    """pytorch-msssim MS-SSIM (5 scales, batched); already in [0, 1] (negative terms are ReLU'd)."""

    def __call__(self, a: Tensor, b: Tensor) -> np.ndarray:
        from pytorch_msssim import ms_ssim

        with torch.inference_mode():
            scores = ms_ssim(a, b, data_range=1.0, size_average=False)
        return np.clip(np.nan_to_num(scores.double().numpy()), 0.0, 1.0)


class WeightedSimilarity:
    """Weighted mean of metrics; weights are normalised to sum to 1, zero-weight ones never run."""

    def __init__(self, parts: Mapping[str, tuple[float, SimilarityMetric]]) -> None:
        total = sum(weight for weight, _ in parts.values())
        self.parts = {name: (w / total, m) for name, (w, m) in parts.items() if w > 0}

    def __call__(self, a: Tensor, b: Tensor) -> np.ndarray:
        total = np.zeros(len(a))
        for weight, metric in self.parts.values():
            total += weight * metric(a, b)
        return total


METRIC_MODES = (*SIMILARITY_METRICS.names(), "combined")


def metric_weights(metric: str, alpha: float, beta: float, gamma: float) -> dict[str, float]:
    """Weight per base metric for a mode; ValueError (one line) on a bad name or bad weights."""
    weights = {"lpips": alpha, "ssim": beta, "ms_ssim": gamma}
    for name, greek in zip(weights, ("alpha", "beta", "gamma"), strict=True):
        value = weights[name]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ConfigError(f"{greek} (weight of {name}) must be a finite number, got {value!r}")
        if value < 0:
            raise ConfigError(f"{greek} (weight of {name}) must be >= 0, got {value!r}")
    if metric == "combined":
        if sum(weights.values()) <= 0:
            raise ConfigError("metric 'combined' needs a positive weight: alpha, beta and gamma are all 0")
        return weights
    if metric not in SIMILARITY_METRICS.names():
        raise ConfigError(f"unknown similarity metric {metric!r}; choose from: {', '.join(METRIC_MODES)}")
    return {name: float(name == metric) for name in weights}


def build_metric(
    weights: Mapping[str, float], lpips_net: str = "alex", lpips_weights: str = ""
) -> WeightedSimilarity:
    """The metric for weights from ``metric_weights``; only metrics with a weight are built."""
    params = {"lpips": {"net": lpips_net, "weights": lpips_weights}}
    return WeightedSimilarity({
        name: (weight, SIMILARITY_METRICS.create(name, params.get(name)))
        for name, weight in weights.items()
        if weight > 0
    })
