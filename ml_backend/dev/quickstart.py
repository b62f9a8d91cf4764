"""The whole loop on the sample dataset: Label Studio + backend + a seeded project, on 127.0.0.1."""
from __future__ import annotations

import dataclasses
import json
import signal
import socket
import sys
import time
from pathlib import Path

from ..config import Config
from ..labelstudio.client import LabelStudioClient
from ..labelstudio.seeding import SeedOptions, seed_project, selector_params
from .local_stack import LabelStudioSettings, ManagedProcess, free_port, new_token, start_backend, start_label_studio
from .sample_dataset import make_sample_dataset

#: Representatives of the sample dataset (78 images: 6 scenes x 13 versions).
SAMPLE_REPRESENTATIVES = 12


def credentials(path: Path) -> dict:
    """Label Studio keeps the first start's token in its database, so reuse it on later runs."""
    if path.exists():
        return json.loads(path.read_text())
    values = {"username": "admin@example.com", "password": "mos-annotator", "token": new_token()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=1))
    return values


def run_quickstart(config: Config, home: Path, port: int, backend_port: int, exit_after_seed: bool) -> int:
    """``config``: the settings in effect (backbone, selector...); the folders are ``home``'s.
    SIGTERM, like Ctrl-C, stops every server this started, at any point."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    home = home.resolve()
    images = home / "files" / "sample"
    if not (images / "manifest.csv").exists():
        rows = make_sample_dataset(images)
        print(f"sample dataset: {len(rows)} images in {images}")
    login = credentials(home / "credentials.json")
    port = port if _free(port) else free_port()
    backend_port = backend_port if _free(backend_port) else free_port()
    settings = LabelStudioSettings(home / "label-studio", home / "files", port,
                                   login["username"], login["password"], login["token"])
    first = not (settings.data_dir / "label_studio.sqlite3").exists()
    print(f"starting Label Studio on {settings.url}"
          + (" (first start: it creates its database, 1-4 min on 2 cores)" if first else " (~5-20 s)"), flush=True)
    label_studio = start_label_studio(settings, home / "logs" / "label-studio.log",
                                      progress=lambda s: print(f"  still starting ({s:.0f} s)", flush=True))
    servers: list[ManagedProcess] = [label_studio]
    try:
        env = {"LABEL_STUDIO_URL": settings.url, "LABEL_STUDIO_API_KEY": settings.token,
               "LOCAL_FILES_DOCUMENT_ROOT": str(settings.document_root),
               "MOS_STATE_DIR": str(home / "state"), "MOS_CACHE_DIR": str(home / "features")}
        backend = start_backend(env, backend_port, home / "logs" / "backend.log")
        servers.append(backend)
        print(f"ML backend on {backend.url}; seeding (features are cached in {home / 'features'})")
        client = LabelStudioClient(settings.url, settings.token)
        report = seed_project(client, SeedOptions(
            folder=images, document_root=settings.document_root, title="MOS sample",
            selector=config.selector, selector_params=selector_params(config.selector, SAMPLE_REPRESENTATIVES),
            features=dataclasses.replace(config, cache_dir=home / "features"), backend_url=backend.url,
        ))
        print()
        print(f"  Open {report.project_url}")
        print(f"  Log in as {settings.username} / {settings.password}   (API token: {settings.token})")
        print(f"  {report.n_images} images, {len(report.representatives)} representatives first; "
              f"backend {report.backend}")
        command = Path(sys.executable).with_name("mos-annotator")
        print(f"  Export: LABEL_STUDIO_URL={settings.url} LABEL_STUDIO_API_KEY={settings.token} "
              f"{command} export --project-id {report.project_id} --out {Path.cwd() / 'MOS.csv'}")
        print(f"  Logs: {home / 'logs'}")
        if not exit_after_seed:
            print("\nServing; press Ctrl-C to stop.")
            try:
                while all(server.process is not None and server.process.poll() is None for server in servers):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
    finally:
        for server in reversed(servers):
            server.stop()
    return 0


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0
