"""Shared fixtures: a real Label Studio process and a real backend process on 127.0.0.1."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import requests

from ml_backend.local_stack import (
    LabelStudioSettings,
    ManagedProcess,
    free_port,
    start_backend,
    start_label_studio,
)
from ml_backend.ls_client import LabelStudioClient
from ml_backend.sample_dataset import make_sample_dataset

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A file under ../shared, or a skip that says what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not present (it lives in ../shared beside the repository)")
    return path


@dataclass
class Stack:
    """The running servers and the folders they share."""

    root: Path
    document_root: Path
    images: Path
    cache_dir: Path
    state_dir: Path
    label_studio: ManagedProcess
    settings: LabelStudioSettings
    backend: ManagedProcess
    backend_env: dict[str, str]

    @property
    def ls_url(self) -> str:
        return self.settings.url

    @property
    def token(self) -> str:
        return self.settings.token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.settings.token}"}

    def client(self) -> LabelStudioClient:
        return LabelStudioClient(self.ls_url, self.token)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        response = requests.request(method, f"{self.ls_url}{path}", headers=self.headers, timeout=120, **kwargs)
        assert response.status_code < 400, f"{method} {path}: {response.status_code} {response.text[:300]}"
        return response

    def restart_backend(self) -> None:
        port = int(self.backend.url.rsplit(":", 1)[1])
        self.backend.stop()
        self.backend = start_backend(self.backend_env, port, self.root / "logs" / "backend.log", cwd=REPO)

    def run_script(self, script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / "scripts" / script), *args],
            capture_output=True, text=True, timeout=600, cwd=self.root,
            env={**os.environ, "MOS_CACHE_DIR": str(self.cache_dir), **(env or {})},
        )


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
        backend = start_backend(backend_env, free_port(), logs / "backend.log", cwd=REPO)
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
