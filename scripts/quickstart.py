#!/usr/bin/env python
"""Run the whole loop locally on the sample dataset: Label Studio + backend + a seeded project."""
from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from pathlib import Path

from ml_backend.label_config import LabelConfigError
from ml_backend.local_stack import LabelStudioSettings, free_port, new_token, start_backend, start_label_studio
from ml_backend.ls_client import LabelStudioClient, LabelStudioError
from ml_backend.sample_dataset import make_sample_dataset
from ml_backend.seeding import SeedError, SeedOptions, seed_project

REPO = Path(__file__).resolve().parents[1]


def credentials(path: Path) -> dict:
    """Label Studio keeps the first start's token in its database, so reuse it on later runs."""
    if path.exists():
        return json.loads(path.read_text())
    values = {"username": "admin@example.com", "password": "mos-annotator", "token": new_token()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=1))
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the sample dataset, start Label Studio "
                                     "(SQLite) and the ML backend on 127.0.0.1, seed a project, "
                                     "print the URL and login, and keep serving until Ctrl-C.")
    parser.add_argument("--home", type=Path, default=REPO / ".mos" / "quickstart",
                        help="where data, logs and caches go (default %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="Label Studio port (default %(default)s; "
                        "a free one is used if busy)")
    parser.add_argument("--backend-port", type=int, default=9090, help="backend port (default %(default)s)")
    parser.add_argument("--exit-after-seed", action="store_true", help="stop both servers once seeded")
    args = parser.parse_args(argv)

    home = args.home.resolve()
    images = home / "files" / "sample"
    if not (images / "manifest.csv").exists():
        rows = make_sample_dataset(images)
        print(f"sample dataset: {len(rows)} images in {images}")
    login = credentials(home / "credentials.json")
    port = args.port if _free(args.port) else free_port()
    backend_port = args.backend_port if _free(args.backend_port) else free_port()
    settings = LabelStudioSettings(home / "label-studio", home / "files", port,
                                   login["username"], login["password"], login["token"])
    print(f"starting Label Studio on {settings.url} (first start migrates its database: ~30-60 s)")
    label_studio = start_label_studio(settings, home / "logs" / "label-studio.log")
    backend = None
    try:
        env = {"LABEL_STUDIO_URL": settings.url, "LABEL_STUDIO_API_KEY": settings.token,
               "LOCAL_FILES_DOCUMENT_ROOT": str(settings.document_root),
               "MOS_STATE_DIR": str(home / "state"), "MOS_CACHE_DIR": str(home / "features")}
        backend = start_backend(env, backend_port, home / "logs" / "backend.log", cwd=REPO)
        print(f"ML backend on {backend.url}; seeding (features are cached in {home / 'features'})")
        client = LabelStudioClient(settings.url, settings.token)
        report = seed_project(client, SeedOptions(
            folder=images, document_root=settings.document_root,
            label_config=REPO / "label_config" / "number_0_100.xml", title="MOS sample",
            selector_params={"n_select": 12, "random_state": 0}, cache_dir=home / "features",
            backend_url=backend.url,
        ))
    except (LabelStudioError, SeedError, LabelConfigError, RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        for server in (backend, label_studio):
            if server is not None:
                server.stop()
        return 1
    print()
    print(f"  Open {report.project_url}")
    print(f"  Log in as {settings.username} / {settings.password}   (API token: {settings.token})")
    print(f"  {report.n_images} images, {len(report.representatives)} representatives first; "
          f"backend {report.backend}")
    print(f"  Export: LABEL_STUDIO_URL={settings.url} LABEL_STUDIO_API_KEY={settings.token} "
          f".venv/bin/python scripts/export.py --project-id {report.project_id} --out MOS.csv")
    print(f"  Logs: {home / 'logs'}")
    if not args.exit_after_seed:
        print("\nServing; press Ctrl-C to stop.")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while label_studio.process.poll() is None and backend.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    backend.stop()
    label_studio.stop()
    return 0


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


if __name__ == "__main__":
    raise SystemExit(main())
