"""EfficientNet-Lite0 features on a GPU (issue 18 item 6): float32, channels-last, float16.

The model alone, on images already decoded: batches of one image shape (the backbone's "SAME"
padding follows the input size), each variant's features compared with float32 features of the
same images on the CPU, the reference the feature store holds. A variant is usable only if its
largest difference stays within ``TOLERANCE``. Without a CUDA device the suite says so and measures
nothing; the test runs it on the CPU, which exercises everything but the timings' meaning.

    mos-annotator benchmark --suite gpu
"""
from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from ..features.backbones import Backbone, get_backbone
from ..features.images import list_images, load_image

#: Largest difference from the CPU float32 features for a variant to count.
TOLERANCE = 1e-3


def _images(photos: Path, n_images: int, net: Backbone) -> list[torch.Tensor]:
    """``n_images`` preprocessed images of the folder's commonest shape (generated 500x500 ones
    when the folder is absent), repeated to reach the count."""
    paths = list_images(photos)[0] if photos.is_dir() else []
    tensors = [net.preprocess(load_image(p)) for p in paths[:n_images]]
    if not tensors:
        rng = np.random.default_rng(0)
        tensors = [torch.from_numpy(rng.standard_normal((3, 500, 500), dtype=np.float32))
                   for _ in range(min(n_images, 16))]
    shape, _ = Counter(tuple(t.shape) for t in tensors).most_common(1)[0]
    same = [t for t in tensors if tuple(t.shape) == shape]
    return [same[i % len(same)] for i in range(n_images)]


def run_gpu_benchmark(photos: Path, n_images: int = 256, batch: int = 32, reps: int = 3,
                      device: str | None = None) -> None:
    """Print one row per variant: images/s (median of ``reps``) and the largest difference."""
    device = device or ("cuda" if torch.cuda.is_available() else None)
    if device is None:
        print("no CUDA device here (torch.cuda.is_available() is False): the GPU rows need one; nothing measured")
        return
    net = get_backbone("efficientnet_lite0")
    images = _images(photos, n_images, net)
    batches = [torch.stack(images[i:i + batch]) for i in range(0, len(images), batch)]
    with torch.inference_mode():
        reference = net(batches[0]).numpy()
    half = torch.float16 if device == "cuda" else torch.bfloat16
    on_device = net.to(device)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True  # one shape: let cuDNN pick its fastest kernels
        torch.backends.cudnn.allow_tf32 = False  # as MOS_DEVICE=cuda runs float32 (features/extractor.py)

    def variant(channels_last: bool, autocast: bool) -> Callable[[], np.ndarray]:
        layout = torch.channels_last if channels_last else torch.contiguous_format
        model = on_device.to(memory_format=layout)
        inputs = [b.to(device).contiguous(memory_format=layout) for b in batches]

        def run() -> np.ndarray:
            context = torch.autocast(device, dtype=half) if autocast else nullcontext()
            with torch.inference_mode(), context:
                out = [model(x) for x in inputs]
            if device == "cuda":
                torch.cuda.synchronize()
            return out[0].float().cpu().numpy()
        return run

    variants = {"float32": (False, False), "float32, channels-last": (True, False),
                f"{str(half).split('.')[1]} autocast": (False, True),
                f"{str(half).split('.')[1]} autocast, channels-last": (True, True)}
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"efficientnet_lite0 on {name} ({device}), {len(images)} images of {tuple(images[0].shape)[1:]}, "
          f"batches of {batch}, model alone (decoded in memory), medians of {reps}; torch {torch.__version__}")
    print("| Variant | Images/s | Largest difference from CPU float32 | Usable |\n|---|---|---|---|")
    for label, (channels_last, autocast) in variants.items():
        run = variant(channels_last, autocast)
        difference = float(np.abs(run() - reference).max())  # the first call also warms up
        rates = []
        for _ in range(reps):
            started = time.perf_counter()
            run()
            rates.append(len(images) / (time.perf_counter() - started))
        usable = "yes" if difference <= TOLERANCE else f"no (> {TOLERANCE:g})"
        print(f"| {label} | {float(np.median(rates)):.1f} | {difference:.2e} | {usable} |")
