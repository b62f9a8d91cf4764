"""The backbone through ONNX Runtime: several times PyTorch's speed on CPU (docs/performance.md).

The backbones' "SAME" padding depends on the input size, so an exported graph is valid for the
image shape it was traced at (any batch size). One graph is exported per shape, once a shape has
had ``MIN_IMAGES`` images (an export costs seconds, which a few images would not repay; PyTorch
runs the rest), and kept beside the feature cache for the next run and the other processes.
Sessions do not spin-wait (``allow_spinning`` off: a spinning pool collapses on a busy machine,
as torch's did) and use the thread count the extractor's governor gives.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .backbones import Backbone

log = logging.getLogger(__name__)

#: Images of one shape before its graph is exported.
MIN_IMAGES = 24


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxGraphs:
    """Per image shape, the backbone as an ONNX Runtime session, or None (use PyTorch)."""

    def __init__(self, backbone: Backbone, folder: Path, min_images: int | None = None) -> None:
        self.backbone = backbone
        self.folder = folder
        self.min_images = MIN_IMAGES if min_images is None else min_images
        version = hashlib.sha256(f"{backbone.name}-{backbone.version}".encode()).hexdigest()[:16]
        self._prefix = f"{backbone.name}-{version}"
        self._seen: dict[tuple[int, ...], int] = {}
        self._sessions: dict[tuple[tuple[int, ...], int], Any] = {}
        self._failed: set[tuple[int, ...]] = set()
        self._lock = threading.Lock()

    def run(self, batch: torch.Tensor, threads: int) -> np.ndarray | None:
        """The backbone's output for ``batch`` through ONNX Runtime, or None while its shape has no
        graph yet."""
        shape = tuple(batch.shape[1:])
        with self._lock:
            session = self._sessions.get((shape, threads))
            if session is None:
                if shape in self._failed:
                    return None
                path = self._path(shape)
                try:
                    if not path.exists():
                        self._seen[shape] = self._seen.get(shape, 0) + len(batch)
                        if self._seen[shape] < self.min_images:
                            return None
                        self._export(batch, path)
                    session = self._sessions[(shape, threads)] = _session(path, threads)
                except Exception as exc:  # PyTorch computes the same features: fall back, say why once
                    self._failed.add(shape)
                    log.warning("ONNX Runtime not used for %s images (PyTorch instead): %s",
                                "x".join(map(str, shape[1:])), " ".join(str(exc).split())[:300])
                    return None
        return session.run(None, {"image": batch.numpy()})[0]

    def _path(self, shape: tuple[int, ...]) -> Path:
        return self.folder / f"{self._prefix}-{'x'.join(map(str, shape))}.onnx"

    def _export(self, batch: torch.Tensor, path: Path) -> None:
        """Trace at this shape into a temporary file, then move it in place (atomic for the other
        processes that may export the same shape)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        log.info("exporting %s for %s images to ONNX (once per shape)", self.backbone.name,
                 "x".join(map(str, batch.shape[2:])))
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".onnx.tmp")
        os.close(fd)
        try:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on the shape-dependent padding
                torch.onnx.export(self.backbone, (batch.clone(),), tmp, dynamo=False, opset_version=17,
                                  input_names=["image"], output_names=["features"],
                                  dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}})
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _session(path: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = max(1, threads), 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
