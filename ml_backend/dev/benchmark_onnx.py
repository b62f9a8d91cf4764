"""EfficientNet-Lite0 features through ONNX Runtime beside PyTorch, at one image shape.

The backbone's "SAME" padding depends on the input size, so the traced export is valid for the
shape it was traced at (any batch size): the candidate runtime would keep one exported graph per
image shape. Measured here on the clive-dev photos of the most common shape (generated images
when absent), both runtimes with the same threads, alternating, batches of 8.

    mos-annotator benchmark --suite onnx
"""
from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from ..features.backbones import get_backbone
from ..features.images import list_images, load_image

BATCH = 8


def run_onnx_benchmark(photos: Path, n_images: int = 24, threads: int = 2, reps: int = 3) -> None:
    import onnxruntime

    torch.set_num_threads(threads)
    net = get_backbone("efficientnet_lite0")
    paths = list_images(photos)[0] if photos.is_dir() else []
    tensors = [net.preprocess(load_image(p)) for p in paths[: 4 * n_images]]
    if not tensors:
        rng = np.random.default_rng(0)
        tensors = [torch.from_numpy(rng.standard_normal((3, 500, 500), dtype=np.float32)) for _ in range(n_images)]
    shape, _ = Counter(tuple(t.shape) for t in tensors).most_common(1)[0]
    images = [t for t in tensors if tuple(t.shape) == shape][:n_images]
    batches = [torch.stack(images[i : i + BATCH]) for i in range(0, len(images), BATCH)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lite0.onnx"
        started = time.perf_counter()
        torch.onnx.export(net, (batches[0],), str(path), dynamo=False, opset_version=17, input_names=["image"],
                          output_names=["features"], dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}})
        export_s = time.perf_counter() - started
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def with_torch() -> np.ndarray:
        with torch.inference_mode():
            return np.vstack([net(b).numpy() for b in batches])

    def with_onnx() -> np.ndarray:
        return np.vstack([session.run(None, {"image": b.numpy()})[0] for b in batches])

    difference = float(np.abs(with_onnx() - with_torch()).max())
    rates: dict[str, list[float]] = {"pytorch": [], "onnxruntime": []}
    for _ in range(reps):
        for name, run in (("pytorch", with_torch), ("onnxruntime", with_onnx)):
            started = time.perf_counter()
            run()
            rates[name].append(len(images) / (time.perf_counter() - started))
    torch_rate, onnx_rate = (float(np.median(rates[k])) for k in ("pytorch", "onnxruntime"))
    print(f"efficientnet_lite0, {len(images)} images of {shape[1]}x{shape[2]}, batches of {BATCH}, {threads} threads, "
          f"medians of {reps} alternating runs; onnxruntime {onnxruntime.__version__}, torch {torch.__version__}")
    print("| Runtime | Images/s | |\n|---|---|---|")
    print(f"| pytorch | {torch_rate:.2f} | |")
    print(f"| onnxruntime | {onnx_rate:.2f} | {onnx_rate / torch_rate:.2f}x pytorch |")
    print(f"| export (torch.onnx, traced at this shape) | {export_s:.1f} s | once per image shape |")
    print(f"| largest feature difference | {difference:.2e} | target <= 1e-3 |")
