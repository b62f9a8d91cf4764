from __future__ import annotations

from pathlib import Path

import pytest

from ml_backend.labelstudio.task_images import TaskImageError, local_files_url, resolve_task_image


def test_local_files_url_round_trip(tmp_path: Path) -> None:
    image = tmp_path / "my photos" / "img 1.png"
    image.parent.mkdir()
    image.write_bytes(b"x")
    url = local_files_url(image, tmp_path)
    assert url == "/data/local-files/?d=my%20photos/img%201.png"
    assert resolve_task_image(url, tmp_path) == image.resolve()
    # Label Studio sometimes prefixes its host; the path part is what counts.
    assert resolve_task_image(f"http://localhost:8080{url}", tmp_path) == image.resolve()


def test_absolute_path_inside_the_root_is_accepted(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    assert resolve_task_image(str(root / "a.png"), root) == root / "a.png"
    assert resolve_task_image(f"file://{root}/a%20b.png", root) == root / "a b.png"


def test_symlinks_out_of_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (root / "link.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(TaskImageError, match="outside"):
        resolve_task_image("/data/local-files/?d=link.png", root)


@pytest.mark.parametrize("reference, root, message", [
    ("/data/local-files/?d=../../etc/passwd", True, "outside"),
    ("/data/local-files/?d=/etc/passwd", True, "outside"),
    ("/data/local-files/?d=", True, "no \\?d="),
    ("/etc/passwd", True, "outside"),
    ("file:///etc/passwd", True, "outside"),
    ("/etc/passwd", False, "LOCAL_FILES_DOCUMENT_ROOT is not set"),
    ("/data/local-files/?d=a%00.png", True, "NUL"),
    ("/data/local-files/?x=1", True, "no \\?d="),
    ("/data/local-files/?d=a.png", False, "LOCAL_FILES_DOCUMENT_ROOT is not set"),
    ("https://example.com/a.png", True, "not a local file"),
    ("", True, "empty"),
])
def test_bad_references(tmp_path: Path, reference: str, root: bool, message: str) -> None:
    with pytest.raises(TaskImageError, match=message):
        resolve_task_image(reference, tmp_path if root else None)
