"""The whole product path on a real Label Studio and a real backend process.

seed → representatives first in the label stream → annotate → background retrain → prediction with
the new model version → restart keeps the model → export MOS.csv, checked row by row.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
import requests

from ml_backend.features.images import natural_key
from ml_backend.labelstudio.webhooks import WEBHOOK_HEADER
from tests.helpers import Stack

pytestmark = pytest.mark.e2e

N_REPRESENTATIVES = 6
TITLE = "E2E sample"


def number_result(value: int) -> list[dict]:
    return [{"from_name": "mos", "to_name": "image", "type": "number", "value": {"number": value}}]


def human_rating(level: int) -> int:
    """A plausible rating: the reference scores high, each distortion level lower."""
    return 90 - 18 * level


def manifest_levels(stack: Stack) -> dict[str, int]:
    with open(stack.root / "manifest.csv") as handle:
        return {row["image"]: int(row["level"]) for row in csv.DictReader(handle)}


def seed(stack: Stack, *extra: str):
    return stack.run(
        "seed", str(stack.images), "--url", stack.ls_url, "--api-key", stack.token,
        "--document-root", str(stack.document_root), "--backend-url", stack.backend.url,
        "--no-progress", *extra,
    )


def test_seed_annotate_learn_predict_export(stack: Stack) -> None:
    levels = manifest_levels(stack)
    result = seed(stack, "--title", TITLE, "-n", str(N_REPRESENTATIVES))
    assert result.returncode == 0, result.stderr
    # The corrupt JPEG and the text file are reported with a reason; the rest was imported.
    assert "img999.jpg: " in result.stdout and "notes.txt: " in result.stdout, result.stdout
    assert f"{len(levels)} imported" in result.stdout

    client = stack.client()
    project_id = client.find_project(TITLE)
    assert project_id is not None
    tasks = sorted(client.tasks(project_id), key=lambda t: t.id)
    assert sorted(t.data["image_name"] for t in tasks) == sorted(levels)
    assert [t.data["representative"] for t in tasks] == [1] * N_REPRESENTATIVES + [0] * (len(tasks) - N_REPRESENTATIVES)

    # Seeding again adds nothing: every image is already a task.
    again = seed(stack, "--title", TITLE, "-n", str(N_REPRESENTATIVES))
    assert again.returncode == 0, again.stderr
    assert "0 imported" in again.stdout and len(client.tasks(project_id)) == len(tasks)

    # The label stream hands out the representatives first; no prediction before any label.
    rated: dict[int, list[int]] = {}
    for position in range(N_REPRESENTATIVES):
        task = stack.api("GET", f"/api/projects/{project_id}/next").json()
        assert task["id"] == tasks[position].id
        assert task["data"]["representative"] == 1
        if position == 0:  # blind mode (the default): the rater is shown no prediction
            assert not task.get("predictions"), task.get("predictions")
        value = human_rating(levels[task["data"]["image_name"]])
        stack.api("POST", f"/api/tasks/{task['id']}/annotations",
                  json={"result": number_result(value), "was_cancelled": False})
        rated[task["id"]] = [value]

    # A second rater on the first representative; a skip (cancelled annotation) on another task.
    rater = stack.api("POST", "/api/users", json={"email": "rater2@example.com", "username": "rater2"}).json()
    first = tasks[0].id
    stack.api("POST", f"/api/tasks/{first}/annotations",
              json={"result": number_result(rated[first][0] - 10), "was_cancelled": False,
                    "completed_by": rater["id"]})
    rated[first].append(rated[first][0] - 10)
    skipped_task = tasks[-1].id
    stack.api("POST", f"/api/tasks/{skipped_task}/annotations", json={"result": [], "was_cancelled": True})

    trained = stack.wait_for_labels(project_id, N_REPRESENTATIVES)
    version = trained["model_version"]
    assert version.startswith("ridge-v"), trained
    # The backend signed the webhook Label Studio made for it; the ratings after that came from
    # the webhooks' payloads (no task fetched), the two raters' mean included.
    hooks = stack.api("GET", "/api/webhooks/", params={"project": project_id}).json()
    (hook,) = [h for h in hooks if h["url"] == f"{stack.backend.url}/webhook"]
    assert len(hook["headers"].get(WEBHOOK_HEADER, "")) == 64, hook
    log = (stack.root / "logs" / "backend.log").read_text()
    assert "now carry their token" in log and "1 from signed webhooks, 0 fetched" in log, log[-2000:]
    labels = json.loads((stack.state_dir / f"project-{project_id}.json").read_text())["labels"]
    assert labels[str(first)]["mos"] == pytest.approx(sum(rated[first]) / 2) and labels[str(first)]["n"] == 2

    # The backend stored the new model's prediction of every unrated task in Label Studio and made
    # it the project's model version (Data Manager columns and sorting); of the older versions only
    # the one it replaced is left (a rater may have one of its predictions open).
    unrated = {t.id for t in tasks} - set(rated)
    assert trained["published"]["model_version"] == version, trained
    stored = client.predictions(project_id)
    versions = {p["model_version"] for p in stored}
    assert version in versions and len(versions) <= 2, versions
    assert sorted(p["task"] for p in stored if p["model_version"] == version) == sorted(unrated)
    assert trained["published"]["tasks"] == len(unrated)
    assert client.get_project(project_id).model_version == version

    # The next (unrated) task has a prediction of the new model version (stored, not shown: blind).
    task = stack.api("GET", f"/api/projects/{project_id}/next").json()
    assert task["id"] not in rated
    predictions = [p for p in client.predictions(project_id)
                   if p["task"] == task["id"] and p["model_version"] == version]
    assert len(predictions) == 1, task["predictions"]
    prediction = predictions[0]
    (item,) = prediction["result"]
    assert item["from_name"] == "mos" and item["type"] == "number"
    value = item["value"]["number"]
    assert isinstance(value, int) and 0 <= value <= 100
    assert 0.0 <= prediction["score"] <= 1.0

    # A restarted backend reloads its state: same model version, still predicting.
    stack.restart_backend()
    setup = requests.post(f"{stack.backend.url}/setup", timeout=10, json={
        "project": f"{project_id}.0", "schema": client.get_label_config(project_id),
        "hostname": stack.ls_url, "access_token": stack.token}).json()
    assert setup == {"model_version": version}

    # /predict with one unreadable image: that task gets an empty result, the other is answered.
    good = tasks[N_REPRESENTATIVES].data
    response = requests.post(f"{stack.backend.url}/predict", timeout=60, json={
        "project": f"{project_id}.0", "label_config": client.get_label_config(project_id),
        "tasks": [{"id": 1, "data": good}, {"id": 2, "data": {"image": "/data/local-files/?d=sample/missing.png"}}],
    })
    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 2 and results[0]["result"] and results[1]["result"] == []

    # Export: every image once, numerically sorted, human mean where rated, newest prediction elsewhere.
    out = stack.root / "MOS.csv"
    export = stack.run("export", "--project-id", str(project_id), "--out", str(out),
                              "--details", "--url", stack.ls_url, "--api-key", stack.token)
    assert export.returncode == 0, export.stderr
    assert export.stderr == "", export.stderr  # nothing missing
    rows = list(csv.DictReader(open(out)))
    assert [r["Image_Name"] for r in rows] == sorted(levels, key=natural_key)
    predicted_by_task = {}
    for p in sorted(client.predictions(project_id), key=lambda p: (p["created_at"], p["id"])):
        if p["result"]:
            item = p["result"][0]  # the editor's rounded value, and the model's own beside it
            assert abs(item["mos_annotator"]["mos"] - item["value"]["number"]) <= 0.5
            predicted_by_task[p["task"]] = (item["mos_annotator"]["mos"], p["model_version"])
    task_of = {t.data["image_name"]: t.id for t in tasks}
    for row in rows:
        task_id = task_of[row["Image_Name"]]
        if task_id in rated:
            values = rated[task_id]
            assert row["Source"] == "human"
            assert float(row["MOS"]) == pytest.approx(sum(values) / len(values))
            assert int(row["N_Ratings"]) == len(values)
        else:
            expected_value, expected_version = predicted_by_task[task_id]
            assert row["Source"] == "predicted"
            assert float(row["MOS"]) == pytest.approx(expected_value, abs=1e-4)
            assert 0.0 <= float(row["Confidence"]) <= 1.0
            assert row["Model_Version"] == expected_version == version
            assert row["N_Ratings"] == "0"
    assert sum(r["Source"] == "human" for r in rows) == N_REPRESENTATIVES


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_seed_with_wrong_token_fails_in_one_line(stack: Stack) -> None:
    result = stack.run("seed", str(stack.images), "--url", stack.ls_url, "--api-key",
                              "not-a-valid-token", "--document-root", str(stack.document_root))
    assert result.returncode == 1
    assert "401" in one_line_error(result)


def test_scripts_report_label_studio_down_in_one_line(stack: Stack, tmp_path: Path) -> None:
    from ml_backend.dev.local_stack import free_port

    down = f"http://127.0.0.1:{free_port()}"
    result = stack.run("seed", str(stack.images), "--url", down, "--api-key", "x",
                              "--document-root", str(stack.document_root))
    assert result.returncode == 1
    assert "cannot reach Label Studio" in one_line_error(result)
    result = stack.run("export", "--project-id", "1", "--out", str(tmp_path / "m.csv"),
                              "--url", down, "--api-key", "x")
    assert result.returncode == 1
    assert "cannot reach Label Studio" in one_line_error(result)
    assert not (tmp_path / "m.csv").exists()


def test_seed_on_empty_folder_says_so(stack: Stack) -> None:
    empty = stack.document_root / "nothing-here"
    empty.mkdir(exist_ok=True)
    result = stack.run("seed", str(empty), "--url", stack.ls_url, "--api-key", stack.token,
                              "--document-root", str(stack.document_root))
    assert result.returncode == 1
    assert "no images found" in one_line_error(result)


def test_backend_survives_bad_webhooks(stack: Stack) -> None:
    url = stack.backend.url
    assert requests.post(f"{url}/webhook", data="not json", timeout=5).status_code == 400
    assert requests.post(f"{url}/webhook", json={"no": "action"}, timeout=5).status_code == 400
    assert requests.post(f"{url}/webhook", json={"action": "ANNOTATION_CREATED"}, timeout=5).status_code == 400
    unknown = requests.post(f"{url}/webhook", json={"action": "SOMETHING_NEW", "project": {"id": 1}}, timeout=5)
    assert unknown.status_code == 200 and unknown.json()["status"] == "ignored"
    assert requests.get(f"{url}/health", timeout=5).json()["status"] == "UP"


def test_report_writes_every_plot_for_a_rated_project(stack: Stack) -> None:
    """Runs after the annotate test: its project has 6 rated images (one of them by two raters)."""
    from ml_backend.labelstudio.dataset_report import PLOTS

    project_id = stack.client().find_project(TITLE)
    assert project_id is not None
    out = stack.root / "report"
    result = stack.run("report", "--project-id", str(project_id), "--out", str(out), "--url", stack.ls_url,
                       "--api-key", stack.token, "--document-root", str(stack.document_root))
    assert result.returncode == 0, result.stderr
    assert "each rating predicted without it: SRCC" in result.stdout, result.stdout
    for name in PLOTS:
        assert (out / name).stat().st_size > 5000, name  # a drawn plot, not an empty canvas
    page = (out / "index.html").read_text()
    assert all(f'src="{name}"' in page for name in PLOTS) and "rated by people" in page


def test_while_the_full_store_waits_the_head_of_the_stream_shows_the_newest_model(stack: Stack) -> None:
    """A backend whose full stores are held back (MOS_PUBLISH_PAUSE, as on a big project) rewrites,
    through Label Studio's API, the suggestions of the tasks the stream hands out next."""
    from ml_backend.dev.local_stack import free_port, start_backend
    from ml_backend.service.service import FRONT

    # the next store waits 60 times the first one's duration: seconds, long after the refresh
    env = {**stack.backend_env, "MOS_PUBLISH_PAUSE": "60", "MOS_STATE_DIR": str(stack.root / "state-held")}
    backend = start_backend(env, free_port(), stack.root / "logs" / "backend-held.log")
    try:
        seeded = stack.run("seed", str(stack.images), "--url", stack.ls_url, "--api-key", stack.token,
                           "--document-root", str(stack.document_root), "--backend-url", backend.url,
                           "--no-progress", "--title", "E2E held store", "-n", "3", "--mode", "suggest")
        assert seeded.returncode == 0, seeded.stderr
        client = stack.client()
        project_id = client.find_project("E2E held store")
        tasks = sorted(client.tasks(project_id), key=lambda t: t.id)

        def until(found, what: str, timeout: float = 120):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                project = requests.get(f"{backend.url}/status", timeout=5).json()["projects"].get(str(project_id))
                value = found(project) if project else None
                if value:
                    return value
                time.sleep(0.5)
            raise AssertionError(f"{what}: {project}")

        stack.api("POST", f"/api/tasks/{tasks[0].id}/annotations",
                  json={"result": number_result(70), "was_cancelled": False})
        stored_version = until(lambda p: p["n_labels"] == 1 and (p["published"] or {}).get("model_version")
                               == p["model_version"] and p["model_version"], "no model stored after a rating")
        queue = sorted((p["score"], p["task"]) for p in client.predictions(project_id)
                       if p["model_version"] == stored_version)
        head = [task for _, task in queue[1:FRONT + 1]]
        stack.api("POST", f"/api/tasks/{queue[0][1]}/annotations",
                  json={"result": number_result(30), "was_cancelled": False})

        def refreshed(project: dict):
            newest = project["model_version"]
            if project["n_labels"] != 2 or newest == stored_version:
                return None
            now = {p["task"]: p for p in client.predictions(project_id) if p["model_version"] == stored_version}
            return (newest, now) if all(f"model {newest}:" in json.dumps(now[task]["result"]) for task in head) \
                else None

        newest, now = until(refreshed, "the head of the stream kept the stored model's suggestions", 60)
        # the full store is still held back: the stored version, its order, the rest of its suggestions
        assert client.get_project(project_id).model_version == stored_version
        assert all(now[task]["score"] == score for score, task in queue)
        assert all(f"model {stored_version}:" in json.dumps(now[task]["result"]) for _, task in queue[FRONT + 1:])
        # what the rater is handed next carries the newest model's suggestion
        following = stack.api("GET", f"/api/projects/{project_id}/next").json()
        assert following["id"] == queue[1][1]
        assert f"model {newest}:" in json.dumps(following.get("predictions"))
    finally:
        backend.stop()
