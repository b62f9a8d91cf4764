"""What several test modules share: paths, ../shared lookups, the running-servers handle."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from ml_backend.config import Config
from ml_backend.dev.fakes import export_only_label_studio
from ml_backend.dev.local_stack import LabelStudioSettings, ManagedProcess, start_backend
from ml_backend.labelstudio.client import LabelStudioClient
from ml_backend.labelstudio.label_config import blind
from ml_backend.service.app import create_app
from ml_backend.service.service import MOSService

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

    def restart_backend(self, kill: bool = False) -> None:
        """Stop the backend (SIGTERM, or SIGKILL as a crash would) and start it on the same port."""
        self.stop_backend(kill)
        self.start_backend()

    def stop_backend(self, kill: bool = False) -> None:
        if kill and self.backend.process is not None:
            os.killpg(self.backend.process.pid, signal.SIGKILL)
            self.backend.process.wait(30)
        self.backend.stop()

    def start_backend(self) -> None:
        port = int(self.backend.url.rsplit(":", 1)[1])
        self.backend = start_backend(self.backend_env, port, self.root / "logs" / "backend.log")

    def wait_for_labels(self, project_id: int, n_labels: int, timeout: float = 180) -> dict:
        """The backend's status of the project once it has trained on ``n_labels`` and is idle."""
        deadline = time.monotonic() + timeout
        status: dict = {}
        while time.monotonic() < deadline:
            status = requests.get(f"{self.backend.url}/status", timeout=5).json()
            project = status["projects"].get(str(project_id))
            if project and project["n_labels"] == n_labels and not status["training"]:
                return project
            time.sleep(0.5)
        raise AssertionError(f"backend did not retrain on {n_labels} labels in {timeout} s: {status}")

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess:
        """``mos-annotator COMMAND ARGS`` in the stack's folder, sharing its feature cache."""
        return run_command(command, *args, cwd=self.root, env={"MOS_CACHE_DIR": str(self.cache_dir)})




# --- the backend in-process (Flask test client, Label Studio replaced by a fixed export) -----
#: The shipped configs as the default (blind) seed creates them; SUGGEST_CONFIG keeps the suggestion line.
SUGGEST_CONFIG = (REPO / "label_config" / "number_0_100.xml").read_text()
NUMBER_CONFIG = blind(SUGGEST_CONFIG)
RATING_CONFIG = blind((REPO / "label_config" / "rating_1_5.xml").read_text())
PROJECT = 5


def rate(task: dict[str, Any], value: float, key: str = "number", name: str = "mos", rater: int = 1) -> dict[str, Any]:
    """``task`` with one annotation scoring ``value``."""
    kind = "number" if key == "number" else "rating"
    annotation = {"id": task["id"] * 10 + rater, "completed_by": rater, "was_cancelled": False,
                  "result": [{"from_name": name, "to_name": "image", "type": kind, "value": {key: value}}]}
    return {**task, "annotations": [annotation]}


def make_app(config: Config, tasks: list[dict[str, Any]], label_config: str = NUMBER_CONFIG):
    """The Flask app and its service, over a Label Studio that exports ``tasks``."""
    service = MOSService(config, client_factory=export_only_label_studio(tasks, label_config, PROJECT))
    return create_app(config, service), service


def setup_body(label_config: str = NUMBER_CONFIG, extra: Any = None, project: int = PROJECT,
               hostname: str = "http://localhost:8080", token: str = "abc") -> dict[str, Any]:
    return {"project": f"{project}.1700000000", "schema": label_config, "hostname": hostname,
            "access_token": token, "extra_params": extra}


def predict_body(tasks: list[dict[str, Any]], label_config: str = NUMBER_CONFIG,
                 project: int = PROJECT) -> dict[str, Any]:
    return {"project": f"{project}.1700000000", "label_config": label_config, "tasks": tasks}
