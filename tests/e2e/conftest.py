"""A real Label Studio process and a real backend process on 127.0.0.1, for the whole session."""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_backend.dev.local_stack import LabelStudioSettings, free_port, start_backend, start_label_studio
from ml_backend.dev.sample_dataset import make_sample_dataset
from tests.helpers import Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stack")
    document_root = root / "files"
    images = document_root / "sample"
    make_sample_dataset(images, scenes=2)
    (images / "manifest.csv").rename(root / "manifest.csv")
    (images / "proxy_labels.csv").unlink()
    # Bad input the seed must survive: a corrupt JPEG, a non-image file, an empty sub-folder.
    (images / "img999.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (images / "notes.txt").write_text("not an image\n")
    (images / "empty").mkdir()
    settings = LabelStudioSettings(data_dir=root / "ls-data", document_root=document_root, port=free_port())
    logs = root / "logs"
    label_studio = start_label_studio(settings, logs / "label-studio.log")
    backend_env = {
        "LABEL_STUDIO_URL": settings.url,
        "LABEL_STUDIO_API_KEY": settings.token,
        "LOCAL_FILES_DOCUMENT_ROOT": str(document_root),
        "MOS_STATE_DIR": str(root / "state"),
        "MOS_CACHE_DIR": str(root / "features"),
        "MOS_LOG_LEVEL": "INFO",
    }
    try:
        backend = start_backend(backend_env, free_port(), logs / "backend.log")
    except Exception:
        label_studio.stop()
        raise
    stack = Stack(root, document_root, images, root / "features", root / "state", label_studio,
                  settings, backend, backend_env)
    yield stack
    stack.backend.stop()
    stack.label_studio.stop()
    if os.environ.get("MOS_KEEP_TEST_LOGS"):
        shutil.copytree(logs, Path(os.environ["MOS_KEEP_TEST_LOGS"]), dirs_exist_ok=True)
