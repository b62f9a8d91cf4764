"""Generate the quickstart's sample dataset: real photos with distortion ladders.

The photos ship with scikit-image, so nothing is downloaded and no binary is committed. Each scene
gets a reference plus JPEG, blur and noise ladders: the kinds of degradation MOS studies rate, with
a known order of severity inside each ladder.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from ..errors import ConfigError, MissingPathError


def _scenes() -> dict[str, Callable[[], np.ndarray]]:
    from skimage import data

    return {
        "astronaut": data.astronaut,
        "chelsea": data.chelsea,
        "coffee": data.coffee,
        "rocket": data.rocket,
        "motorcycle": lambda: data.stereo_motorcycle()[0],
        "camera": data.camera,
    }


JPEG_QUALITIES = (30, 15, 8, 4)
BLUR_SIGMAS = (1.0, 2.0, 3.5, 6.0)
NOISE_SIGMAS = (8.0, 16.0, 32.0, 64.0)


@dataclass(frozen=True)
class SampleImage:
    name: str
    scene: str
    distortion: str  # reference, jpeg, blur or noise
    level: int  # 0 for the reference, 1 (mild) .. 4 (severe)
    parameter: float


def _jpeg(image: Image.Image, quality: float) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(quality))
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _variants(image: Image.Image, rng: np.random.Generator):
    """Yield (distortion, level, parameter, extension, encoded bytes) for one scene."""
    yield "reference", 0, 0.0, "png", _png(image)
    for level, quality in enumerate(JPEG_QUALITIES, 1):
        yield "jpeg", level, quality, "jpg", _jpeg(image, quality)
    for level, sigma in enumerate(BLUR_SIGMAS, 1):
        yield "blur", level, sigma, "png", _png(image.filter(ImageFilter.GaussianBlur(sigma)))
    pixels = np.asarray(image, dtype=np.float32)
    for level, sigma in enumerate(NOISE_SIGMAS, 1):
        noisy = np.clip(pixels + rng.normal(0.0, sigma, pixels.shape), 0, 255).astype(np.uint8)
        yield "noise", level, sigma, "png", _png(Image.fromarray(noisy))


#: Gold images of the sample (``gold.csv``, 0-100 scale): each scene's reference is rated at least
#: this, its strongest blur at most ``GOLD_BLURRED_MAX``: mistakes nobody looking at them makes.
GOLD_REFERENCE_MIN = 60
GOLD_BLURRED_MAX = 40


def make_sample_dataset(out: Path, scenes: int | None = None, seed: int = 0) -> list[SampleImage]:
    """Write ``img1..imgN``, ``manifest.csv``, ``proxy_labels.csv`` and ``gold.csv`` into ``out``.

    ``proxy_labels.csv`` (``image,mos``) scores each image ``100 - 20 * level``: not human opinion,
    only the known order of severity, so the evaluate command can compare predictors on ladders.
    ``gold.csv`` (``image,min,max``, for ``seed --gold``): each scene's reference and its strongest
    blur, with ranges on the 0-100 scale.
    """
    available = list(_scenes().items())
    if scenes is not None and not 1 <= scenes <= len(available):
        raise ConfigError(f"--scenes must be between 1 and {len(available)}, got {scenes}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MissingPathError(f"cannot create the sample folder {out}: {exc.strerror or exc}") from None
    rng = np.random.default_rng(seed)
    chosen = available[:scenes]
    rows: list[SampleImage] = []
    for scene, load in chosen:
        array = load()
        image = Image.fromarray(array).convert("RGB")
        for distortion, level, parameter, ext, payload in _variants(image, rng):
            name = f"img{len(rows) + 1}.{ext}"
            (out / name).write_bytes(payload)
            rows.append(SampleImage(name, scene, distortion, level, parameter))
    with open(out / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "scene", "distortion", "level", "parameter"])
        for row in rows:
            writer.writerow([row.name, row.scene, row.distortion, row.level, row.parameter])
    with open(out / "proxy_labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mos"])
        for row in rows:
            writer.writerow([row.name, proxy_score(row.level)])
    with open(out / "gold.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "min", "max"])
        for row in rows:
            if row.distortion == "reference":
                writer.writerow([row.name, GOLD_REFERENCE_MIN, 100])
            elif row.distortion == "blur" and row.level == len(BLUR_SIGMAS):
                writer.writerow([row.name, 0, GOLD_BLURRED_MAX])
    return rows


def proxy_score(level: int) -> int:
    """Stand-in quality from the distortion level (0 = reference), for evaluation only."""
    return 100 - 20 * level
