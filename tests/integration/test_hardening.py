"""The backend as an attacker and an unlucky operator meet it (issue 14, one test per class of fault).

Most run in-process (Flask test client, Label Studio replaced by a fixed export); the token tests
use the real Label Studio client against listeners on 127.0.0.1, and the FIFO test a real backend
process, because a blocked server thread only shows there.
"""
from __future__ import annotations

import json
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from ml_backend.config import Config
from ml_backend.dev.local_stack import free_port, start_backend
from ml_backend.errors import ConfigError, ImageReadError
from ml_backend.features.images import decode_image, read_image_bytes
from ml_backend.service import trainer as trainer_module
from ml_backend.service.app import create_app
from ml_backend.service.service import MOSService
from ml_backend.service.state import ProjectState, StateStore
from ml_backend.service.trainer import TrainingQueue
from tests.helpers import NUMBER_CONFIG, PROJECT, make_app, predict_body, rate, setup_body

SECRET = "configured-secret-token-0123456789abcdef"


class Listener:
    """An HTTP server on 127.0.0.1 that records every request it gets (and answers 404)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen.append({"path": self.path, "headers": dict(self.headers),
                             "body": self.rfile.read(length).decode(errors="replace")})
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_PATCH = _record

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def saw(self, secret: str) -> bool:
        return any(secret in json.dumps(r) for r in self.requests)


@pytest.fixture()
def listeners() -> Iterator[tuple[Listener, Listener]]:
    """(Label Studio as configured, an attacker's host); both refuse everything."""
    pair = (Listener(), Listener())
    yield pair
    for listener in pair:
        listener.server.shutdown()


def trained(config: Config, tasks: list[dict[str, Any]], n: int = 5):
    """An app whose project PROJECT is trained on the first ``n`` tasks."""
    app, service = make_app(config, [rate(t, 90 - 5 * i) for i, t in enumerate(tasks[:n])] + tasks[n:])
    client = app.test_client()
    client.post("/setup", json=setup_body())
    service.train(PROJECT)
    return client, service


# --- token to a foreign host ------------------------------------------------------------------
def test_a_key_without_its_url_refuses_to_start(config: Config) -> None:
    with pytest.raises(ConfigError, match="LABEL_STUDIO_API_KEY is set but LABEL_STUDIO_URL is not"):
        MOSService(replace(config, label_studio_url=""))


def test_the_configured_token_goes_only_to_the_configured_url(config: Config, listeners) -> None:
    label_studio, attacker = listeners
    config = replace(config, label_studio_url=label_studio.url, label_studio_api_key=SECRET)
    service = MOSService(config)
    client = create_app(config, service).test_client()
    assert client.post("/setup", json=setup_body(hostname=attacker.url, token="theirs")).status_code == 200
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": PROJECT}})
    assert service.wait_idle(60)
    service.trainer.stop()
    assert label_studio.requests and label_studio.saw(SECRET)  # the retrain asked the configured host
    assert attacker.requests == []


def test_without_settings_a_project_is_pinned_to_its_first_host(config: Config, listeners) -> None:
    label_studio, attacker = listeners
    config = replace(config, label_studio_url="", label_studio_api_key="")
    service = MOSService(config)
    client = create_app(config, service).test_client()
    assert client.post("/setup", json=setup_body(hostname=label_studio.url, token=SECRET)).status_code == 200
    moved = client.post("/setup", json=setup_body(hostname=attacker.url, token="theirs"))
    assert moved.status_code == 400 and f"belongs to the Label Studio at {label_studio.url}" in moved.json["error"]
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": PROJECT}})
    assert service.wait_idle(60)
    service.trainer.stop()
    assert label_studio.saw(SECRET) and attacker.requests == []
    for hostname in ("file:///etc", "gopher://x", 42):
        assert client.post("/setup", json=setup_body(hostname=hostname, project=PROJECT + 1)).status_code == 400
    # The pin survives a restart: a new process refuses the other host too.
    again = create_app(config, MOSService(config)).test_client()
    assert again.post("/setup", json=setup_body(hostname=attacker.url, token="theirs")).status_code == 400


# --- files outside the document root, non-regular files, byte and pixel limits ---------------
def test_only_regular_files_inside_the_root_are_read(config: Config, dataset, tmp_path: Path) -> None:
    root, tasks = dataset
    outside = tmp_path / "outside.png"
    outside.write_bytes((root / "sample" / "img1.png").read_bytes())
    link = root / "sample" / "link-out.png"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    fifo = root / "sample" / "pipe.png"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    client, _ = trained(config, tasks)
    hostile = [str(outside), f"file://{outside}", "/data/local-files/?d=sample/../../outside.png",
               "/data/local-files/?d=sample/link-out.png", "/data/local-files/?d=sample/pipe.png",
               "/data/local-files/?d=sample", "http://127.0.0.1:9/x.png"]
    body = predict_body([{"id": i, "data": {"image": ref}} for i, ref in enumerate(hostile)] + [tasks[6]])
    started = time.monotonic()
    results = client.post("/predict", json=body).json["results"]
    assert time.monotonic() - started < 30  # the FIFO did not block the request
    assert [r["result"] for r in results[:-1]] == [[]] * len(hostile)
    assert results[-1]["result"]  # the good task is still answered


def test_training_skips_labels_whose_images_are_outside_the_root(config: Config, dataset, tmp_path: Path) -> None:
    root, tasks = dataset
    outside = tmp_path / "secret.png"
    outside.write_bytes((root / "sample" / "img1.png").read_bytes())
    escaping = [{**rate(t, 50), "data": {"image": str(outside)}} for t in tasks[:4]]
    app, service = make_app(config, escaping + tasks[4:])
    app.test_client().post("/setup", json=setup_body())
    state = service.train(PROJECT)
    assert state.model_version == "untrained"  # nothing outside the root was read to fit on


def test_byte_and_pixel_limits(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\0" * 5000)
    with pytest.raises(ImageReadError, match="over the limit MOS_MAX_IMAGE_BYTES=1000"):
        read_image_bytes(big, max_bytes=1000)
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageReadError, match="not a regular file"):
        read_image_bytes(fifo)
    with pytest.raises(ImageReadError, match="not a regular file"):
        read_image_bytes(tmp_path)
    bomb = pixel_bomb(13000, 13000)
    assert len(bomb) < 200
    started = time.monotonic()
    with pytest.raises(ImageReadError, match="13000x13000 = 169000000 pixels, over the limit MOS_MAX_PIXELS"):
        decode_image(bomb, "bomb.png")
    assert time.monotonic() - started < 1  # refused from the header, not decoded
    with pytest.raises(ImageReadError, match="over the limit MOS_MAX_PIXELS=100"):
        decode_image(pixel_bomb(20, 20), "small.png", max_pixels=100)


def pixel_bomb(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels, with almost no data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def test_a_fifo_does_not_block_a_real_backend(dataset, tmp_path: Path) -> None:
    root, tasks = dataset
    fifo = root / "sample" / "real-pipe.png"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    labels = {str(t["id"]): {"image": t["data"]["image"], "mos": 50.0 + i, "n": 1} for i, t in enumerate(tasks[:5])}
    StateStore(tmp_path / "state").save(ProjectState(PROJECT, version=1, model_version="ridge-v1", predictor="ridge",
                                                     labels=labels))
    env = {"LOCAL_FILES_DOCUMENT_ROOT": str(root), "MOS_STATE_DIR": str(tmp_path / "state"),
           "MOS_CACHE_DIR": str(tmp_path / "features"), "LABEL_STUDIO_URL": f"http://127.0.0.1:{free_port()}",
           "LABEL_STUDIO_API_KEY": "unused"}
    backend = start_backend(env, free_port(), tmp_path / "backend.log")
    try:
        body = predict_body([{"id": 1, "data": {"image": "/data/local-files/?d=sample/real-pipe.png"}}, tasks[6]])
        results = requests.post(f"{backend.url}/predict", json=body, timeout=60).json()["results"]
        assert results[0]["result"] == [] and results[1]["result"]
        assert requests.get(f"{backend.url}/health", timeout=5).json()["status"] == "UP"
    finally:
        backend.stop()


# --- unauthenticated webhook flood ------------------------------------------------------------
def test_webhooks_for_unknown_projects_queue_nothing(config: Config, dataset) -> None:
    _, tasks = dataset
    app, service = make_app(config, [rate(t, 40 + i) for i, t in enumerate(tasks[:4])])
    client = app.test_client()
    client.post("/setup", json=setup_body())
    for project in range(1000, 1300):
        answer = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": project}})
        assert answer.json["status"] == "ignored"
    started = time.monotonic()
    real = client.post("/webhook", json={"action": "ANNOTATION_CREATED", "project": {"id": PROJECT}})
    assert real.json["status"] in ("queued", "trained")
    assert service.wait_idle(60) and time.monotonic() - started < 20
    assert client.get("/status").json["projects"][str(PROJECT)]["n_labels"] == 4
    assert set(client.get("/status").json["projects"]) == {str(PROJECT)}


def test_the_training_queue_is_bounded_and_merges_requests() -> None:
    ran: list[int] = []
    queue = TrainingQueue(lambda pid, force: ran.append(pid), max_pending=3)
    assert [queue.request(p) for p in (1, 2, 1, 3, 4)] == [True, True, False, True, False]
    queue.start()
    assert queue.wait_idle(10)
    queue.stop()
    assert sorted(ran) == [1, 2, 3]


def test_a_paused_queue_holds_a_projects_next_run_for_pause_times_its_last_one() -> None:
    """MOS_PUBLISH_PAUSE: requests during the pause merge into one run at its end; other projects
    are not held; wait_idle counts a held-back run, wait_idle(due_only=True) does not."""
    runs: list[tuple[int, float]] = []

    def work(pid: int, force: bool) -> None:
        runs.append((pid, time.monotonic()))
        time.sleep(0.2)

    queue = TrainingQueue(work, pause=3.0)  # each run 0.2 s: the next of that project 0.6 s after it
    queue.start()
    queue.request(1)
    assert queue.wait_idle(10)
    ended = time.monotonic()
    for _ in range(3):
        queue.request(1)
    queue.request(2)
    assert queue.wait_idle(0.3, due_only=True) and not queue.wait_idle(0.05)
    assert queue.wait_idle(10)
    queue.stop()
    assert [pid for pid, _ in runs] == [1, 2, 1]  # three requests during the pause: one run
    assert runs[1][1] - ended < 0.3 and runs[2][1] - ended >= 0.55


# --- a model that silently goes stale --------------------------------------------------------
def test_a_failed_retrain_is_shown_and_retried_with_backoff(config: Config, dataset, monkeypatch) -> None:
    _, tasks = dataset
    monkeypatch.setattr(trainer_module, "FIRST_BACKOFF", 0.2)
    app, service = make_app(config, [rate(t, 40 + i) for i, t in enumerate(tasks[:4])])
    client = app.test_client()
    client.post("/setup", json=setup_body())
    fake = service._client_factory
    export = fake.export_tasks
    fake.export_tasks = lambda self, project_id: (_ for _ in ()).throw(OSError("Label Studio went away"))
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": PROJECT}})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        error = client.get("/status").json["projects"][str(PROJECT)]["last_error"]
        if error and error["attempts"] >= 2:
            break
        time.sleep(0.1)
    assert error["error"] == "Label Studio went away" and error["attempts"] >= 2 and error["since"] > 0
    fake.export_tasks = export  # Label Studio is back: the next retry succeeds and clears the error
    while time.monotonic() < deadline:
        status = client.get("/status").json["projects"][str(PROJECT)]
        if status["last_error"] is None and status["n_labels"] == 4:
            break
        time.sleep(0.1)
    assert status["last_error"] is None and status["model_version"] == "ridge-v1"


def test_a_restarted_backend_catches_up_without_a_webhook(config: Config, dataset) -> None:
    _, tasks = dataset
    first, service = trained(config, tasks, n=3)
    assert first.get("/status").json["projects"][str(PROJECT)]["n_labels"] == 3
    service.trainer.stop()
    # Two more ratings while the backend was down; it restarts and is asked nothing.
    later = [rate(t, 60) for t in tasks[:5]] + tasks[5:]
    app, restarted = make_app(config, later)
    assert restarted.trainer.wait_idle(60)
    assert app.test_client().get("/status").json["projects"][str(PROJECT)]["n_labels"] == 5
    # Nothing new: a catch-up keeps the model and its version.
    app, again = make_app(config, later)
    again.trainer.wait_idle(60)
    assert app.test_client().post("/setup", json=setup_body()).json["model_version"] == "ridge-v2"


# --- corrupt or unreadable state --------------------------------------------------------------
@pytest.mark.parametrize("content", ["{truncated", "[1, 2]", '{"project_id": 5, "labels": "x"}',
                                     '{"project_id": 5, "labels": {"1": {"image": 3, "mos": 1, "n": 1}}}',
                                     '{"project_id": 6}', "\udcff not utf-8"])
def test_a_corrupt_state_file_is_moved_aside_and_rebuilt(config: Config, dataset, content: str) -> None:
    _, tasks = dataset
    config.state_dir.mkdir(parents=True)
    path = config.state_dir / f"project-{PROJECT}.json"
    path.write_bytes(content.encode(errors="surrogateescape"))
    app, service = make_app(config, [rate(t, 40 + i) for i, t in enumerate(tasks[:4])])
    client = app.test_client()
    answer = client.post("/setup", json=setup_body())
    assert answer.status_code == 200 and answer.is_json
    assert len(list(config.state_dir.glob(f"project-{PROJECT}.json.corrupt-*"))) == 1
    assert service.wait_idle(60)  # the catch-up rebuilt it from Label Studio
    assert json.loads(path.read_text())["labels"].keys() == {"1", "2", "3", "4"}


# --- parameters, bodies, configs, ids -------------------------------------------------------
@pytest.mark.parametrize("extra, message", [
    ({"predictor": "knn", "n_neighbors": -3}, "n_neighbors must be a positive integer"),
    ({"predictor": "knn", "n_neighbors": 0}, "n_neighbors must be a positive integer"),
    ({"predictor": "knn", "weights": "bogus"}, "weights must be one of uniform, distance"),
    ({"predictor": "ridge", "alphas": "abc"}, "ridge.alphas='abc' is not a valid tuple"),
    ({"predictor": "ridge", "alphas": [-1]}, "alphas must be positive"),
    ({"predictor": "ridge", "max_exact": 1}, "max_exact must be an integer >= 3"),
])
def test_every_parameter_is_checked_at_setup(config: Config, dataset, extra: dict, message: str) -> None:
    app, _ = make_app(config, [])
    client = app.test_client()
    before = client.post("/setup", json=setup_body()).json
    bad = client.post("/setup", json=setup_body(extra=extra))
    assert bad.status_code == 400 and message in bad.json["error"] and "\n" not in bad.json["error"]
    status = client.get("/status").json["projects"][str(PROJECT)]
    assert (status["predictor"], status["predictor_params"]) == ("ridge", config.params_for("ridge"))  # unchanged
    assert client.post("/setup", json=setup_body()).json == before


def test_hostile_bodies_get_json_answers(config: Config, dataset) -> None:
    _, tasks = dataset
    client, _ = trained(config, tasks)
    deep = client.post("/predict", data="[" * 100_000, content_type="application/json")
    assert deep.status_code == 400 and deep.is_json
    huge = client.post("/predict", data=b"{" + b" " * (33 * 2**20) + b"}", content_type="application/json")
    assert huge.status_code == 413 and huge.is_json
    extreme = NUMBER_CONFIG.replace('max="100"', 'max="1e308"')
    answer = client.post("/predict", json=predict_body(tasks[5:7], label_config=extreme))
    assert answer.status_code == 400 and "not a finite number" in answer.json["error"]
    for project in ("\u0663", "\u0663.1700000000", "-1", "99999999999999999999999"):
        assert client.post("/predict", json={**predict_body(tasks[5:6]), "project": project}).status_code == 400
    mixed = [{"id": 1, "data": None}, {"id": 2, "data": "x"}, {"id": 3, "data": [1]}, tasks[6]]
    results = client.post("/predict", json=predict_body(mixed)).json["results"]
    assert [bool(r["result"]) for r in results] == [False, False, False, True]


def test_an_unwritable_cache_does_not_stop_predictions(config: Config, dataset, tmp_path: Path) -> None:
    _, tasks = dataset
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    client, _ = trained(replace(config, cache_dir=blocked), tasks)
    results = client.post("/predict", json=predict_body(tasks[5:8])).json["results"]
    assert all(r["result"] for r in results)


def test_unknown_projects_leave_no_state(config: Config, dataset) -> None:
    _, tasks = dataset
    app, _ = make_app(config, [])
    client = app.test_client()
    for project in range(50, 80):
        answer = client.post("/predict", json=predict_body(tasks[:1], project=project))
        assert answer.status_code == 200 and answer.json["results"] == []
    assert client.get("/status").json["projects"] == {}
    assert not config.state_dir.exists() or list(config.state_dir.iterdir()) == []
