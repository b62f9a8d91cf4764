"""Fixtures of the in-process backend tests: a small real image folder and its settings."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ml_backend.config import Config
from ml_backend.dev.sample_dataset import make_sample_dataset
from ml_backend.labelstudio.task_images import local_files_url


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """(document root, one unannotated task per image of one sample scene)."""
    root = tmp_path_factory.mktemp("files")
    rows = make_sample_dataset(root / "sample", scenes=1)
    tasks = [
        {"id": i + 1, "data": {"image": local_files_url(root / "sample" / row.name, root),
                               "image_name": row.name}, "annotations": []}
        for i, row in enumerate(rows)
    ]
    return root, tasks


@pytest.fixture()
def config(dataset, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Config:
    root, _ = dataset
    return Config(label_studio_url="http://ls.invalid", label_studio_api_key="token",
                  document_root=root, state_dir=tmp_path / "state",
                  cache_dir=tmp_path_factory.getbasetemp() / "features")
