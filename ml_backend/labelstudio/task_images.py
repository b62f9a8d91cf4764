"""Map the image reference in a Label Studio task to a file on this machine.

The seed imports tasks whose image is ``/data/local-files/?d=<path under the document root>``;
a backend that sees the same folder (same machine, or the same mount in Docker) reads the file
directly instead of downloading it through Label Studio.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlparse

from ..errors import TaskImageError

LOCAL_FILES_PREFIX = "/data/local-files/"


def local_files_url(path: Path, document_root: Path) -> str:
    """The URL Label Studio serves ``path`` under, given its LOCAL_FILES_DOCUMENT_ROOT."""
    relative = path.resolve().relative_to(document_root.resolve())
    return f"{LOCAL_FILES_PREFIX}?d={quote(relative.as_posix())}"


def resolve_task_image(reference: str, document_root: Path | None) -> Path:
    """The local file a task's image names, strictly inside ``document_root`` after resolving
    symlinks and ``..``; TaskImageError for anything else (other folders, URLs, no root set).

    References: ``/data/local-files/?d=<path under the root>`` (what the seed imports, also with
    Label Studio's host in front), or an absolute path / ``file://`` URL inside the root.
    """
    if not isinstance(reference, str) or not reference:
        raise TaskImageError(f"task image reference {reference!r} is empty or not a string")
    return _resolve(reference, document_root)


@lru_cache(maxsize=1 << 17)
def _resolve(reference: str, document_root: Path | None) -> Path:
    """Cached: resolving symlinks costs two ``realpath`` calls per labelled image on every retrain.
    Errors are not cached (``lru_cache`` does not store exceptions)."""
    parsed = urlparse(reference)
    if parsed.path == LOCAL_FILES_PREFIX or parsed.path.endswith(LOCAL_FILES_PREFIX):
        values = parse_qs(parsed.query).get("d")
        if not values:
            raise TaskImageError(f"task image {reference!r} has no ?d= parameter")
        relative = values[0]
    elif parsed.scheme in ("", "file") and unquote(parsed.path).startswith("/"):
        relative = unquote(parsed.path)
    else:
        raise TaskImageError(
            f"task image {reference!r} is not a local file: import images with `mos-annotator seed` "
            "(local files storage) so the backend can read them"
        )
    if document_root is None:
        raise TaskImageError(f"task image {reference!r} is a local file but LOCAL_FILES_DOCUMENT_ROOT is not set")
    if "\x00" in relative:
        raise TaskImageError(f"task image {reference!r} contains a NUL byte")
    root = document_root.resolve()
    path = (root / relative).resolve()  # an absolute ``relative`` replaces the root: checked below
    if root not in path.parents:
        raise TaskImageError(f"task image {reference!r} points outside LOCAL_FILES_DOCUMENT_ROOT")
    return path
