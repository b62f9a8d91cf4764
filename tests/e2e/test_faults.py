"""A crash at the worst moment, on real processes: the backend dies during a retrain, people keep
rating while it is down, and after a restart it serves a model that knows every rating, with no
new webhook to tell it."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from ml_backend.dev.fakes import number_result
from tests.helpers import Stack

pytestmark = pytest.mark.e2e


def test_killed_during_a_retrain_it_catches_up_on_restart(stack: Stack) -> None:
    seeded = stack.run("seed", str(stack.images), "--url", stack.ls_url, "--api-key", stack.token,
                       "--document-root", str(stack.document_root), "--backend-url", stack.backend.url,
                       "--no-progress", "--title", "E2E fault", "-n", "4")
    assert seeded.returncode == 0, seeded.stderr
    client = stack.client()
    project_id = client.find_project("E2E fault")
    tasks = sorted(client.tasks(project_id), key=lambda t: t.id)

    def rate(index: int, value: int) -> None:
        stack.api("POST", f"/api/tasks/{tasks[index].id}/annotations",
                  json={"result": number_result(value), "was_cancelled": False})

    rate(0, 80)
    rate(1, 40)
    stack.wait_for_labels(project_id, 2)
    rate(2, 60)  # its webhook starts a retrain...
    stack.stop_backend(kill=True)  # ...and the backend dies in it
    rate(3, 30)  # people keep rating while it is down
    rate(4, 70)
    started = time.monotonic()
    stack.start_backend()
    project = stack.wait_for_labels(project_id, 5, timeout=30)
    assert time.monotonic() - started < 30
    assert project["last_error"] is None and project["model_version"].startswith("ridge-v")
    body = {"project": f"{project_id}.0", "label_config": client.get_label_config(project_id),
            "tasks": [{"id": tasks[6].id, "data": tasks[6].data}]}
    (answer,) = requests.post(f"{stack.backend.url}/predict", json=body, timeout=60).json()["results"]
    assert answer["result"] and answer["model_version"] == project["model_version"]


def test_sigterm_on_the_quickstart_stops_what_it_started(tmp_path: Path) -> None:
    """SIGTERM while Label Studio is still starting (the longest wait) leaves no server behind."""
    import signal
    import subprocess
    import sys

    from ml_backend.dev.local_stack import free_port

    home, port = tmp_path / "quick", free_port()
    command = [str(Path(sys.executable).with_name("mos-annotator")), "quickstart", "--home", str(home),
               "--port", str(port), "--backend-port", str(free_port())]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = home / "logs" / "label-studio.log"
    deadline = time.monotonic() + 300
    while not (log.exists() and log.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert log.exists(), "Label Studio was never started"
    started = subprocess.run(["pgrep", "-f", f"label-studio start .*--port {port}"], capture_output=True, text=True)
    assert started.stdout.split(), "no Label Studio process to stop"
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "starting Label Studio" in output
    time.sleep(1)
    left = subprocess.run(["pgrep", "-f", f"label-studio start .*--port {port}"], capture_output=True,
                          text=True).stdout.split()
    assert left == [], f"still running: {left}"
