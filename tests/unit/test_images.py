from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml_backend.features.images import (
    ImageReadError,
    decode_image,
    list_images,
    load_image,
    natural_key,
    read_image_bytes,
)


def save_image(path: Path, width: int = 64, height: int = 48, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def test_natural_key_orders_numbers_by_value_and_ignores_case():
    names = ["img10.jpg", "IMG1.jpg", "img2.jpg", "Img02b.jpg", "a.jpg", "img2.JPG"]
    assert sorted(names, key=natural_key) == [
        "a.jpg", "IMG1.jpg", "img2.JPG", "img2.jpg", "Img02b.jpg", "img10.jpg"
    ]


def test_list_images_sorts_naturally_recursing_into_subfolders(tmp_path):
    for rel in ["img10.png", "img2.JPG", "img1.jpeg", "sub/b3.webp", "sub/b20.bmp", "Sub2/x.TIFF"]:
        save_image(tmp_path / rel, fmt="PNG")  # content format does not matter for listing
    images, skipped = list_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in images] == [
        "img1.jpeg", "img2.JPG", "img10.png", "sub/b3.webp", "sub/b20.bmp", "Sub2/x.TIFF"
    ]
    assert skipped == {}


def test_list_images_reports_non_images_and_skips_hidden(tmp_path):
    save_image(tmp_path / "ok.png")
    (tmp_path / "notes.txt").write_text("hi")
    (tmp_path / "README").write_text("hi")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    save_image(tmp_path / ".thumbs" / "t.png")
    images, skipped = list_images(tmp_path)
    assert images == [tmp_path / "ok.png"]
    assert set(skipped) == {tmp_path / "notes.txt", tmp_path / "README"}
    assert ".txt" in skipped[tmp_path / "notes.txt"]


def test_list_images_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        list_images(tmp_path / "nope")


def assert_read_error(exc: ImageReadError, path: Path, reason_part: str) -> None:
    message = str(exc)
    assert "\n" not in message
    assert str(path) in message and exc.path == path
    assert reason_part in exc.reason and exc.reason in message


def test_truncated_jpeg_raises_read_error(tmp_path):
    good = save_image(tmp_path / "good.jpg", 200, 150)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(good.read_bytes()[:1500])
    with pytest.raises(ImageReadError) as info:
        load_image(bad, max_side=None)
    assert_read_error(info.value, bad, "truncated")


def test_text_file_named_jpg_raises_read_error(tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image at all\n")
    with pytest.raises(ImageReadError) as info:
        load_image(fake)
    assert_read_error(info.value, fake, "not an image")


def test_missing_file_raises_read_error(tmp_path):
    missing = tmp_path / "missing.png"
    with pytest.raises(ImageReadError) as info:
        read_image_bytes(missing)
    assert_read_error(info.value, missing, "not found")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_max_side_downscales_keeping_aspect_ratio(tmp_path, fmt):
    path = save_image(tmp_path / f"big.{fmt.lower()}", 400, 100, fmt=fmt)
    img = load_image(path, max_side=200)
    assert img.mode == "RGB" and img.size == (200, 50)


def test_small_images_keep_native_resolution(tmp_path):
    path = save_image(tmp_path / "small.png", 120, 90)
    img = load_image(path, max_side=1024)
    assert img.size == (120, 90)
    assert np.array_equal(np.asarray(img), np.asarray(Image.open(path).convert("RGB")))


def test_exif_orientation_is_applied(tmp_path):
    img = Image.fromarray(np.zeros((100, 200, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    assert decode_image(path.read_bytes(), path).size == (100, 200)
    assert load_image(path, max_side=50).size == (25, 50)
