"""Image I/O: find images in a folder, read them once, decode them at (almost) native resolution.

Quality cues (noise, blur, compression artefacts) live in the pixels, so images are never squashed
to a fixed size; only images larger than ``max_side`` are downscaled, keeping their aspect ratio.
"""
from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import DEFAULTS
from ..errors import ImageReadError, MissingPathError

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
)


def natural_key(text: str) -> tuple[list[str | int], str]:
    """Sort key that orders digit runs by value ("img2" < "img10") and ignores case.

    The original text breaks ties, so the order is total and deterministic.
    """
    parts: list[str | int] = [
        int(chunk) if i % 2 else chunk.lower() for i, chunk in enumerate(re.split(r"(\d+)", text))
    ]
    return parts, text


def is_image_file(path: Path | str) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path | str) -> tuple[list[Path], dict[Path, str]]:
    """Image files under ``folder`` (recursive, natural order) and skipped files -> reason.

    Hidden files and folders (name starting with ".") are skipped silently.
    """
    root = Path(folder)
    if not root.exists():
        raise MissingPathError(f"image folder not found: {root}")
    if not root.is_dir():
        raise MissingPathError(f"not a folder: {root}")
    images: list[Path] = []
    skipped: dict[Path, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath, name)
            if is_image_file(path):
                images.append(path)
            else:
                skipped[path] = f"not an image extension ({path.suffix or 'no extension'})"
    images.sort(key=lambda p: [natural_key(part) for part in p.relative_to(root).parts])
    return images, skipped


def check_size(path: Path | str, size: int, max_bytes: int) -> None:
    """ImageReadError when ``size`` bytes exceed ``max_bytes`` (``MOS_MAX_IMAGE_BYTES``)."""
    if size > max_bytes:
        raise ImageReadError(path, f"{size} bytes, over the limit MOS_MAX_IMAGE_BYTES={max_bytes}")


def check_file(path: Path | str, info: os.stat_result, max_bytes: int) -> None:
    """ImageReadError unless ``info`` is a regular file within ``max_bytes``: a FIFO or device
    would block a read or never end."""
    if not stat.S_ISREG(info.st_mode):
        raise ImageReadError(path, "not a regular file")
    check_size(path, info.st_size, max_bytes)


def read_image_bytes(path: Path | str, max_bytes: int = DEFAULTS.max_image_bytes) -> bytes:
    """The file's content; read once, then used both for the cache key and for decoding.

    Only a regular file is read (a FIFO or device would block or never end: it is opened
    without blocking and refused), and at most ``max_bytes`` of it (``MOS_MAX_IMAGE_BYTES``).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as exc:
        raise ImageReadError(path, exc.strerror or str(exc)) from None
    try:
        check_file(path, os.fstat(fd), max_bytes)  # before fdopen, which refuses a directory on its own terms
    except ImageReadError:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise ImageReadError(path, exc.strerror or str(exc)) from None
    if len(data) > max_bytes:  # grew since the check
        raise ImageReadError(path, f"over the limit MOS_MAX_IMAGE_BYTES={max_bytes} bytes")
    return data


def _fit(size: tuple[int, int], max_side: int | None) -> tuple[int, int] | None:
    """Target size with the longer side at ``max_side``; None when no downscaling is needed."""
    width, height = size
    if max_side is None or max(width, height) <= max_side:
        return None
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def decode_image(data: bytes, path: Path | str, max_side: int | None = None,
                 max_pixels: int = DEFAULTS.max_pixels) -> Image.Image:
    """Fully decode ``data`` to RGB (EXIF orientation applied, as a browser shows it).

    The pixel count is checked from the header first: a small file can declare a huge image
    (a pixel bomb), and decoding it would take seconds and gigabytes. Big JPEGs are decoded at a
    reduced scale (``draft``) before the exact high-quality resize.
    """
    try:
        with warnings.catch_warnings():  # Pillow warns on big images; ours is the stricter limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise ImageReadError(path, f"over the limit MOS_MAX_PIXELS={max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "cannot identify image file (not an image?)") from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError... on corrupt data
        raise ImageReadError(path, f"corrupt or truncated image ({exc})") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise ImageReadError(path, f"{width}x{height} = {width * height} pixels, over the limit "
                             f"MOS_MAX_PIXELS={max_pixels}")
    try:
        with img:
            target = _fit(img.size, max_side)
            if target and img.format == "JPEG":
                img.draft("RGB", target)
            img.load()  # forces a full decode so truncated files fail here, not later
            rgb = img.convert("RGB")
    except UnidentifiedImageError:
        raise ImageReadError(path, "cannot identify image file (not an image?)") from None
    except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError... on corrupt data
        raise ImageReadError(path, f"corrupt or truncated image ({exc})") from None
    if target and rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS)
    return ImageOps.exif_transpose(rgb)


def load_image(path: Path | str, max_side: int | None = None) -> Image.Image:
    """Read and decode one image file (default limits); raises ImageReadError with a one-line reason."""
    return decode_image(read_image_bytes(path), path, max_side)
