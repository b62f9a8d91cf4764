"""What several test modules share: paths, ../shared lookups, the running-servers handle."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from ml_backend.dev.local_stack import LabelStudioSettings, ManagedProcess, start_backend
from ml_backend.labelstudio.client import LabelStudioClient

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
#: The installed command, beside this environment's python.
COMMAND = str(Path(sys.executable).with_name("mos-annotator"))


def run_command(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess:
    """``mos-annotator ARGS`` as a user runs it, output captured."""
    return subprocess.run([COMMAND, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})})


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
        self.backend = start_backend(self.backend_env, port, self.root / "logs" / "backend.log")

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess:
        """``mos-annotator COMMAND ARGS`` in the stack's folder, sharing its feature cache."""
        return run_command(command, *args, cwd=self.root, env={"MOS_CACHE_DIR": str(self.cache_dir)})


