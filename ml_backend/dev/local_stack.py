"""Start Label Studio and the ML backend as local processes on 127.0.0.1.

Used by the quickstart and by the end-to-end tests, so both run the real servers the same way and
avoid the traps in Label Studio 1.23 (silent port moves, SSRF guard on loopback, legacy tokens).
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import requests

from ..errors import UserError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def new_token() -> str:
    """Label Studio accepts user tokens of at most 40 characters."""
    return secrets.token_hex(20)


def wait_for_health(url: str, process: subprocess.Popen, timeout: float, log_path: Path,
                    progress: Callable[[float], None] | None = None) -> None:
    """Until ``url/health`` answers; ``progress(seconds waited)`` every 15 s."""
    started = time.monotonic()
    deadline = started + timeout
    reported = 0
    while time.monotonic() < deadline:
        waited = time.monotonic() - started
        if progress is not None and waited >= reported + 15:
            reported += 15
            progress(waited)
        if process.poll() is not None:
            raise UserError(
                f"{url}: process exited with code {process.returncode}; see {log_path}"
            )
        try:
            if requests.get(f"{url}/health", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise UserError(f"{url}/health did not answer within {timeout:.0f} s; see {log_path}")


@dataclass
class ManagedProcess:
    """A child process with its log file; stopping it stops its whole process group."""

    name: str
    url: str
    log_path: Path
    process: subprocess.Popen | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def launch(self, command: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )

    def wait_healthy(self, timeout: float, progress: Callable[[float], None] | None = None) -> None:
        assert self.process is not None
        wait_for_health(self.url, self.process, timeout, self.log_path, progress)

    def stop(self, timeout: float = 15) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class LabelStudioSettings:
    data_dir: Path
    document_root: Path
    port: int
    username: str = "admin@example.com"
    password: str = "mos-annotator"
    token: str = field(default_factory=new_token)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            # LS reads LABEL_STUDIO_X, then HEARTEX_X, then plain X: drop strays like PORT or HOST.
            if key not in {"PORT", "HOST", "USERNAME", "PASSWORD", "DEBUG"}
        }
        env.update(
            LABEL_STUDIO_BASE_DATA_DIR=str(self.data_dir),
            LABEL_STUDIO_USERNAME=self.username,
            LABEL_STUDIO_PASSWORD=self.password,
            LABEL_STUDIO_USER_TOKEN=self.token,
            LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
            LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK="true",
            USE_DEFAULT_BANNED_SUBNETS="false",
            LOCAL_FILES_SERVING_ENABLED="true",
            LOCAL_FILES_DOCUMENT_ROOT=str(self.document_root.resolve()),
        )
        return env


def start_label_studio(settings: LabelStudioSettings, log_path: Path, timeout: float = 360,
                       progress: Callable[[float], None] | None = None) -> ManagedProcess:
    """Start ``label-studio`` from this environment; the first start migrates SQLite (30 s on a
    fast machine, 1-4 min on 2 shared cores). Stopped again if anything (also SIGTERM, Ctrl-C)
    interrupts the wait."""
    executable = Path(sys.executable).with_name("label-studio")
    command = [
        str(executable), "start", "--no-browser", "--internal-host", "127.0.0.1",
        "--port", str(settings.port),
    ]
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    server = ManagedProcess("label-studio", settings.url, log_path)
    server.launch(command, settings.environment())
    try:
        server.wait_healthy(timeout, progress)
    except BaseException:
        server.stop()
        raise
    return server


def start_backend(env: dict[str, str], port: int, log_path: Path,
                  timeout: float = 60) -> ManagedProcess:
    """Start the backend (``python -m ml_backend``) with the given MOS_* / LABEL_STUDIO_* variables."""
    full_env = {**os.environ, **env, "MOS_HOST": "127.0.0.1", "MOS_PORT": str(port)}
    backend = ManagedProcess("ml-backend", f"http://127.0.0.1:{port}", log_path)
    backend.launch([sys.executable, "-m", "ml_backend"], full_env)
    try:
        backend.wait_healthy(timeout)
    except BaseException:
        backend.stop()
        raise
    return backend
