"""The backend's HTTP protocol through Flask's test client, on real images and the real network.

Label Studio itself is replaced by ``export_only_label_studio`` (ml_backend/dev/fakes.py), which
serves a fixed export the way ``LabelStudioClient`` would; the end-to-end test covers the real server.
"""
from __future__ import annotations

import base64
import json
from dataclasses import replace

import numpy as np
import pytest

from ml_backend.config import Config
from tests.helpers import (
    NUMBER_CONFIG,
    PROJECT,
    RATING_CONFIG,
    SUGGEST_CONFIG,
    make_app,
    predict_body,
    rate,
    setup_body,
)


def test_untrained_backend_answers_without_predictions(config, dataset) -> None:
    _, tasks = dataset
    app, _ = make_app(config, tasks)
    client = app.test_client()
    assert client.get("/health").json["status"] == "UP"
    assert client.post("/setup", json=setup_body()).json == {"model_version": "untrained"}
    response = client.post("/predict", json=predict_body(tasks[:3]))
    assert response.status_code == 200 and response.json["results"] == []


def test_train_predict_and_reload_after_restart(config, dataset) -> None:
    _, tasks = dataset
    labelled = [rate(t, 90 - 5 * i) for i, t in enumerate(tasks[:5])]
    app, service = make_app(config, labelled + tasks[5:])
    client = app.test_client()
    client.post("/setup", json=setup_body())
    state = service.train(PROJECT)
    assert state.model_version == "ridge-v1" and len(state.labels) == 5
    assert client.post("/setup", json=setup_body()).json == {"model_version": "ridge-v1"}
    results = client.post("/predict", json=predict_body(tasks[5:])).json["results"]
    assert len(results) == len(tasks) - 5
    for result in results:
        (item,) = result["result"]
        assert item["from_name"] == "mos" and isinstance(item["value"]["number"], int)
        assert 0 <= item["value"]["number"] <= 100 and 0 <= result["score"] <= 1
        assert result["model_version"] == "ridge-v1"

    restarted, _ = make_app(config, labelled + tasks[5:])
    again = restarted.test_client()
    assert again.post("/setup", json=setup_body()).json == {"model_version": "ridge-v1"}
    assert again.post("/predict", json=predict_body(tasks[5:])).json["results"] == results


def test_every_retrain_stores_its_predictions_of_the_unrated_tasks(config, dataset) -> None:
    """What /predict would answer, stored in Label Studio for every unrated task, as the project's
    model version; the version it replaces stays until the next store (a rater may have one of its
    predictions open), older ones of this backend are deleted, others' kept."""
    from ml_backend.labelstudio import rate_next
    from ml_backend.labelstudio.label_config import read_confidence

    _, tasks = dataset
    tasks = [{**t, "data": {**t["data"], "representative": int(i in (0, 1, 7, 9))}} for i, t in enumerate(tasks)]
    tasks[6]["data"][rate_next.DUPLICATE_KEY] = "img1.png"  # seed --duplicates-last: after every other image
    labelled = [rate(t, 90 - 5 * i) for i, t in enumerate(tasks[:5])]
    app, service = make_app(config, labelled + tasks[5:])
    studio = service._client_factory
    studio.predictions.append({"task": tasks[5]["id"], "model_version": "someone-else", "result": []})
    client = app.test_client()
    client.post("/setup", json=setup_body())
    assert service.wait_idle(60)  # the first request's catch-up trains ridge-v1
    mine = [p for p in studio.predictions if p["model_version"] == "ridge-v1"]
    assert sorted(p["task"] for p in mine) == sorted(t["id"] for t in tasks[5:])
    assert studio.model_version == "ridge-v1"
    answered = client.post("/predict", json=predict_body(tasks[5:])).json["results"]
    by_task = {p["task"]: p for p in mine}
    assert [by_task[t["id"]]["result"] for t in tasks[5:]] == [r["result"] for r in answered]
    assert [read_confidence(by_task[t["id"]]) for t in tasks[5:]] == [r["score"] for r in answered]
    # The stored score is the stream's order: the unrated representatives (tasks 8 and 10) first,
    # in seed order, then the least confident, the marked near-duplicate last.
    order = [p["task"] for p in sorted(mine, key=lambda p: p["score"])]
    assert order[:2] == [tasks[7]["id"], tasks[9]["id"]] and order[-1] == tasks[6]["id"]
    rest = [by_task[task_id] for task_id in order[2:-1]]
    assert [p["score"] for p in rest] == sorted(max(read_confidence(p), rate_next.FLOOR) for p in rest)
    project = client.get("/status").json["projects"][str(PROJECT)]
    assert project["published"]["model_version"] == "ridge-v1" and project["published"]["tasks"] == len(tasks) - 5
    assert project["held_out"]["n"] == 5 and -1 <= project["held_out"]["srcc"] <= 1 and project["held_out"]["rmse"] > 0

    studio.tasks = [rate(t, 50) for t in tasks[:6]] + tasks[6:]
    assert service.train(PROJECT).model_version == "ridge-v2"
    assert service.wait_idle(60)  # the publisher stores the new version's predictions
    assert {p["model_version"] for p in studio.predictions} == {"ridge-v2", "ridge-v1", "someone-else"}
    assert sorted(p["task"] for p in studio.predictions if p["model_version"] == "ridge-v2") == sorted(
        t["id"] for t in tasks[6:])
    assert studio.model_version == "ridge-v2"
    studio.tasks = [rate(t, 50) for t in tasks[:7]] + tasks[7:]
    assert service.train(PROJECT).model_version == "ridge-v3"
    assert service.wait_idle(60)
    assert {p["model_version"] for p in studio.predictions} == {"ridge-v3", "ridge-v2", "someone-else"}


def test_a_failed_publish_keeps_the_new_model_and_says_why(config, dataset) -> None:
    from ml_backend.errors import LabelStudioError

    _, tasks = dataset
    app, service = make_app(config, [rate(t, 40 + i) for i, t in enumerate(tasks[:4])] + tasks[4:])
    studio = service._client_factory

    def refuse(self, project_id, predictions, one_by_one=False):
        raise LabelStudioError("Label Studio at http://localhost:8080 refused to import predictions: HTTP 500")

    studio.import_predictions = refuse
    client = app.test_client()
    client.post("/setup", json=setup_body())
    assert service.wait_idle(60)  # the catch-up retrain, whose publish fails
    project = client.get("/status").json["projects"][str(PROJECT)]
    assert project["model_version"] == "ridge-v1" and "HTTP 500" in project["published"]["error"]
    assert client.post("/setup", json=setup_body()).json == {"model_version": "ridge-v1"}


def test_while_the_store_waits_the_next_suggestions_come_from_the_newest_model(config, dataset) -> None:
    """Big projects: MOS_PUBLISH_PAUSE holds the next full store back, so the head of the stream
    (the lowest queue scores) gets the newest model's suggestion in place, order and version kept."""
    from ml_backend.service.service import FRONT

    _, tasks = dataset
    app, service = make_app(replace(config, publish_pause=1e6), [rate(t, 30 + 5 * i) for i, t in enumerate(tasks[:4])]
                            + tasks[4:], SUGGEST_CONFIG)
    studio = service._client_factory
    app.test_client().post("/setup", json=setup_body(SUGGEST_CONFIG))
    assert service.trainer.wait_idle(60) and service.publisher.wait_idle(60, due_only=True)
    assert service.refresher.wait_idle(60) and studio.model_version == "ridge-v1"
    queue = sorted((p["score"], p["task"]) for p in studio.predictions)
    before = {p["task"]: (p["score"], json.dumps(p["result"])) for p in studio.predictions}
    assert all("ridge-v1" in text for _, text in before.values())

    rated = queue[0][1]  # the rater took the head of the stream
    studio.tasks = [rate(t, 90) if t["id"] == rated else t for t in studio.tasks]
    assert service.train(PROJECT).model_version == "ridge-v2"
    assert service.refresher.wait_idle(60) and service.publisher.waiting(PROJECT)  # the full store is held back
    assert studio.model_version == "ridge-v1" and {p["model_version"] for p in studio.predictions} == {"ridge-v1"}
    after = {p["task"]: (p["score"], json.dumps(p["result"])) for p in studio.predictions}
    head = [task for _, task in queue[1:FRONT + 1]]
    assert all("ridge-v2" in after[task][1] and after[task][0] == before[task][0] for task in head)
    assert all(after[task] == before[task] for _, task in queue[FRONT + 1:])  # the rest waits for the store
    assert after[rated] == before[rated]


def test_webhook_retrains_in_background_and_bumps_version(config, dataset) -> None:
    _, tasks = dataset
    app, service = make_app(config, [rate(t, 50 + i) for i, t in enumerate(tasks[:3])])
    client = app.test_client()
    client.post("/setup", json=setup_body())
    assert service.wait_idle(60)  # the catch-up of the first request
    assert client.get("/status").json["projects"][str(PROJECT)]["model_version"] == "ridge-v1"
    client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": PROJECT}})  # the button
    assert service.wait_idle(60)
    assert client.post("/setup", json=setup_body()).json == {"model_version": "ridge-v2"}
    payload = {"action": "ANNOTATION_CREATED", "annotation": {"id": 1}, "task": {"id": 1}, "project": {"id": PROJECT}}
    assert client.post("/webhook", json=payload).json["status"] in ("queued", "trained")  # waited <= 0.9 s
    assert service.wait_idle(60)
    assert client.get("/status").json["projects"][str(PROJECT)]["model_version"] == "ridge-v3"
    ignored = client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": PROJECT}})
    assert ignored.json["status"] == "ignored"


def test_rating_predictions_are_whole_stars(config, dataset) -> None:
    _, tasks = dataset
    labelled = [rate(t, 1 + i % 5, key="rating", name="rating") for i, t in enumerate(tasks[:6])]
    app, service = make_app(config, labelled + tasks[6:], RATING_CONFIG)
    client = app.test_client()
    client.post("/setup", json=setup_body(RATING_CONFIG))
    service.train(PROJECT)
    results = client.post("/predict", json=predict_body(tasks[6:], RATING_CONFIG)).json["results"]
    stars = [r["result"][0]["value"]["rating"] for r in results]
    assert all(isinstance(s, int) and 1 <= s <= 5 for s in stars)
    assert all(r["result"][0]["type"] == "rating" for r in results)


def test_extra_params_choose_predictor_settings(config, dataset) -> None:
    _, tasks = dataset
    app, service = make_app(config, [rate(t, 40 + i) for i, t in enumerate(tasks[:4])])
    client = app.test_client()
    assert client.get("/status").json["projects"] == {}  # nothing loaded before Label Studio's /setup
    client.post("/setup", json=setup_body())
    assert client.get("/status").json["projects"][str(PROJECT)]["predictor"] == "ridge"
    client.post("/setup", json=setup_body(extra=json.dumps({"predictor": "knn", "n_neighbors": 2})))
    status = client.get("/status").json["projects"][str(PROJECT)]
    # Parameters not given per project come from the environment's defaults.
    assert (status["predictor"], status["predictor_params"]) == ("knn", {"n_neighbors": 2, "weights": "distance"})
    service.wait_idle(60)
    client.post("/setup", json=setup_body())  # extra_params removed again: back to the default
    assert client.get("/status").json["projects"][str(PROJECT)]["predictor"] == "ridge"
    bad = client.post("/setup", json=setup_body(extra={"predictor": "knn", "neighbours": 3}))
    assert bad.status_code == 400 and "neighbours" in bad.json["error"]
    assert client.post("/setup", json=setup_body(extra={"predictor": "svm"})).status_code == 400
    assert client.post("/setup", json=setup_body(extra="{not json")).status_code == 400


def test_malformed_requests_get_400(config, dataset) -> None:
    app, _ = make_app(config, [])
    client = app.test_client()
    assert client.post("/predict", data="nope", content_type="application/json").status_code == 400
    assert client.post("/predict", json={"tasks": "x"}).status_code == 400
    assert client.post("/predict", json={"tasks": [], "label_config": NUMBER_CONFIG}).status_code == 400
    assert client.post("/setup", json={"schema": NUMBER_CONFIG}).status_code == 400
    assert client.post("/setup", json=setup_body("<View><Image name='i' value='$i'/></View>")).status_code == 400
    assert client.get("/health").status_code == 200


def test_every_answer_is_json_even_for_bugs_and_unknown_paths(config, dataset, monkeypatch) -> None:
    _, tasks = dataset
    app, service = make_app(config, [rate(t, 60) for t in tasks[:3]])
    client = app.test_client()
    client.post("/setup", json=setup_body())
    service.train(PROJECT)
    hostile = [{"id": 1, "data": "not an object"}, {"id": 2, "data": {"image": ["a", "list"]}}, {"id": 3}]
    answered = client.post("/predict", json=predict_body(hostile))
    assert answered.status_code == 200 and [r["result"] for r in answered.json["results"]] == [[], [], []]
    missing = client.get("/no-such-endpoint")
    assert missing.status_code == 404 and missing.is_json
    monkeypatch.setattr(service, "status", lambda: 1 / 0)
    broken = client.get("/status")
    assert broken.status_code == 500 and broken.is_json and "ZeroDivisionError" in broken.json["error"]


def test_basic_auth(config, dataset) -> None:
    secured = Config(**{**config.__dict__, "basic_auth_user": "u", "basic_auth_pass": "p"})
    app, _ = make_app(secured, [])
    client = app.test_client()
    assert client.post("/setup", json=setup_body()).status_code == 401
    good = base64.b64encode(b"u:p").decode()
    wrong = base64.b64encode(b"u:x").decode()
    assert client.post("/setup", json=setup_body(), headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    assert client.post("/setup", json=setup_body(), headers={"Authorization": f"Basic {good}"}).status_code == 200
    # Label Studio sends event webhooks without credentials; health checks carry none either.
    assert client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 1}}).status_code == 200
    assert client.get("/health").status_code == 200


def test_similarity_predictor_gets_the_image_files(config, dataset) -> None:
    _, tasks = dataset
    labelled = [rate(t, 90 - 5 * i) for i, t in enumerate(tasks[:5])]
    app, service = make_app(config, labelled + tasks[5:])
    client = app.test_client()
    extra = {"predictor": "similarity", "metric": "ssim", "n_neighbors": 2, "size": 64}
    assert client.post("/setup", json=setup_body(extra=extra)).status_code == 200
    assert service.train(PROJECT).model_version == "similarity-v1"
    results = client.post("/predict", json=predict_body(tasks[5:8])).json["results"]
    assert len(results) == 3 and all(0 <= r["result"][0]["value"]["number"] <= 100 for r in results)
    assert client.post("/setup", json=setup_body(extra={"predictor": "similarity", "alpha": -1})).status_code == 400


def test_a_rating_webhook_refetches_only_its_task_and_answers_once_trained(config, dataset) -> None:
    """After the first full export, an annotation webhook fetches that one task: the retrain sees
    its new rating without a new export, and the webhook returns once the model is in place."""
    _, tasks = dataset
    client, service, studio, exports = _three_rated_and_counting_exports(config, tasks)
    studio.tasks = [rate(t, 50 + i) for i, t in enumerate(tasks[:4])] + tasks[4:]
    payload = {"action": "ANNOTATION_CREATED", "task": {"id": tasks[3]["id"]}, "project": {"id": PROJECT}}
    assert client.post("/webhook", json=payload).json["status"] == "trained"
    project = client.get("/status").json["projects"][str(PROJECT)]
    assert (project["n_labels"], project["model_version"], exports) == (4, "ridge-v2", [])
    # A task id from another project is not taken in; deletions and new tasks read everything again.
    studio.task = lambda self, task_id: {"project": PROJECT + 1, "id": task_id, "annotations": []}
    payload = {"action": "ANNOTATION_UPDATED", "task": {"id": tasks[0]["id"]}, "project": {"id": PROJECT}}
    client.post("/webhook", json=payload)
    assert client.get("/status").json["projects"][str(PROJECT)]["n_labels"] == 4 and exports == []
    # Label Studio's "train on submission" echo of an annotation is folded into its retrain.
    echo = client.post("/webhook", json={"action": "START_TRAINING", "project": {"id": PROJECT}}).json
    assert echo["status"] == "merged" and exports == []
    client.post("/webhook", json={"action": "ANNOTATIONS_DELETED", "annotations": [], "project": {"id": PROJECT}})
    assert exports == [PROJECT]


def test_a_copy_older_than_the_resync_period_is_read_again_in_full(config, dataset) -> None:
    """MOS_RESYNC_S: a rating webhook after that long reads the whole project (whatever no
    webhook reported, e.g. a rating made while the webhook could not reach the backend)."""
    _, tasks = dataset
    client, service, studio, exports = _three_rated_and_counting_exports(config, tasks, resync_s=60)
    studio.tasks = [rate(t, 50 + i) for i, t in enumerate(tasks[:5])] + tasks[5:]  # task 5: no webhook
    payload = {"action": "ANNOTATION_CREATED", "task": {"id": tasks[3]["id"]}, "project": {"id": PROJECT}}
    client.post("/webhook", json=payload)
    assert exports == [] and client.get("/status").json["projects"][str(PROJECT)]["n_labels"] == 4
    by_id, label_config, synced = service._task_cache[PROJECT]
    service._task_cache[PROJECT] = (by_id, label_config, synced - 61)  # the copy is now 61 s old
    client.post("/webhook", json=payload)
    assert exports == [PROJECT] and client.get("/status").json["projects"][str(PROJECT)]["n_labels"] == 5


def test_with_every_image_rated_there_is_nothing_to_store_and_no_error(config, dataset) -> None:
    _, tasks = dataset
    app, service = make_app(config, [rate(t, 30 + 3 * i) for i, t in enumerate(tasks)])
    studio = service._client_factory
    studio.predictions.append({"task": tasks[0]["id"], "model_version": "ridge-v7", "result": []})
    client = app.test_client()
    client.post("/setup", json=setup_body())
    assert service.wait_idle(60)
    published = client.get("/status").json["projects"][str(PROJECT)]["published"]
    assert published["tasks"] == 0 and "error" not in published
    assert studio.predictions == [] and studio.model_version == ""  # the stale version is gone


def test_several_raters_train_on_the_screened_mos_weighted_by_its_certainty(config, dataset) -> None:
    """The MOS the backend learns is the export's (MOS_SCREENING: here zscore, which rejects the
    rater who answers at random); with MOS_CERTAINTY_WEIGHTS=on an image with two accepted ratings
    weighs more than one with one."""
    import dataclasses

    from ml_backend.prediction.ridge import RidgePredictor
    from ml_backend.ratings.weights import mos_weights

    _, tasks = dataset
    rng = np.random.default_rng(1)  # a draw the z-score test catches on 8 images (not every draw is)
    truth = [90 - 5 * i for i in range(12)]
    labelled = []
    for i, task in enumerate(tasks[:12]):
        raters = (1, 2, 3) if i < 8 else (1,)
        scores = {1: truth[i] + 2, 2: truth[i] - 2, 3: float(rng.integers(0, 100))}
        annotations = [rate(task, scores[r], rater=r)["annotations"][0] for r in raters]
        labelled.append({**task, "annotations": annotations})
    config = dataclasses.replace(config, screening="zscore", certainty_weights="on")
    app, service = make_app(config, labelled + tasks[12:])
    app.test_client().post("/setup", json=setup_body())
    assert service.wait_idle(60)
    state = service.train(PROJECT)
    for i, task in enumerate(tasks[:12]):
        label = state.labels[str(task["id"])]
        assert (label["mos"], label["n"]) == ((truth[i], 2) if i < 8 else (truth[i] + 2, 1))
    pooled = 8.0  # each two-rater image: scores truth +- 2, variance 8
    variances = [state.labels[str(t["id"])]["var"] for t in tasks[:12]]
    assert variances == pytest.approx([pooled / 2] * 8 + [pooled] * 4)

    X = service._features([state.labels[str(t["id"])]["image"] for t in tasks[:12]]).matrix
    y = np.array([state.labels[str(t["id"])]["mos"] for t in tasks[:12]])
    plain = RidgePredictor().fit(X, y)
    counts = np.array([2] * 8 + [1] * 4)
    weights = mos_weights(np.array(variances), float(np.median(np.array(variances) * counts)), plain.loo_residuals_)
    assert np.all(weights[:8] > 1) and weights[8:] == pytest.approx([1] * 4)
    expected = RidgePredictor().fit(X, y, sample_weight=weights)
    rest = service._features([t["data"]["image"] for t in tasks[12:]]).matrix
    np.testing.assert_allclose(service.model(PROJECT).predictor.predict(rest), expected.predict(rest), atol=1e-6)
    # far beyond the check's 1e-6, so that the check above tells the two fits apart
    assert np.abs(plain.predict(rest) - expected.predict(rest)).max() > 100 * 1e-6


def test_a_project_update_that_keeps_the_label_config_does_not_force_a_full_read(config, dataset) -> None:
    """Label Studio sends PROJECT_UPDATED for every project change, the backend's own setting of
    the model version after each retrain included: only a changed label config reads all again."""
    _, tasks = dataset
    client, service, studio, exports = _three_rated_and_counting_exports(config, tasks)
    rated = {"action": "ANNOTATION_CREATED", "task": {"id": tasks[3]["id"]}, "project": {"id": PROJECT}}
    studio.tasks = [rate(t, 50 + i) for i, t in enumerate(tasks[:4])] + tasks[4:]
    own = {"action": "PROJECT_UPDATED", "project": {"id": PROJECT, "label_config": NUMBER_CONFIG}}
    assert client.post("/webhook", json=own).json["status"] == "ignored"
    client.post("/webhook", json=rated)
    assert exports == []
    changed = {"action": "PROJECT_UPDATED", "project": {"id": PROJECT, "label_config": NUMBER_CONFIG + " "}}
    client.post("/webhook", json=changed)
    client.post("/webhook", json=rated)
    assert exports == [PROJECT]


def test_signed_webhooks_are_applied_from_their_payload_and_unsigned_ones_fetch_the_task(config, dataset) -> None:
    """The backend adds its per-project token to the webhook Label Studio made for it (the one at
    the host its /setup came to, not another backend's); a webhook carrying it is applied from its
    payload without fetching the task, one without it (or with a wrong one) fetches the task, so
    a forged rating never reaches the model."""
    import dataclasses

    from ml_backend.labelstudio.webhooks import WEBHOOK_HEADER

    _, tasks = dataset
    app, service = make_app(dataclasses.replace(config, webhook_wait=60),
                            [rate(t, 50 + i) for i, t in enumerate(tasks[:3])] + tasks[3:])
    studio = service._client_factory
    studio.webhooks_list = [{"id": 1, "url": "http://localhost/webhook", "headers": {"X-Other": "kept"}},
                            {"id": 2, "url": "http://other-backend:9090/webhook", "headers": {}}]
    client = app.test_client()
    client.post("/setup", json=setup_body())  # the test client's requests go to host "localhost"
    assert service.wait_idle(60)
    token = service.signer.token(PROJECT)
    assert studio.webhooks_list[0]["headers"] == {"X-Other": "kept", WEBHOOK_HEADER: token}
    assert studio.webhooks_list[1]["headers"] == {}
    fetched = []
    original = studio.task
    studio.task = lambda self, task_id: fetched.append(task_id) or original(self, task_id)

    def rating(task, value, annotation_id):
        annotation = rate(task, value)["annotations"][0] | {"id": annotation_id, "task": task["id"]}
        return {"action": "ANNOTATION_CREATED", "task": {"id": task["id"]}, "annotation": annotation,
                "project": {"id": PROJECT}}

    client.post("/webhook", json=rating(tasks[3], 77, 901), headers={WEBHOOK_HEADER: token})
    state = service.model(PROJECT).state
    assert fetched == [] and state.labels[str(tasks[3]["id"])]["mos"] == 77
    # Unsigned or wrongly signed: the task is fetched; Label Studio has no rating of task 4.
    for headers in ({}, {WEBHOOK_HEADER: "0" * 64}):
        client.post("/webhook", json=rating(tasks[4], 5, 902), headers=headers)
        assert str(tasks[4]["id"]) not in service.model(PROJECT).state.labels
    assert fetched == [tasks[4]["id"]] * 2


def test_only_the_first_hosts_a_setup_names_are_remembered_for_signing(config, dataset) -> None:
    """A /setup's Host header is the client's to choose: the backend remembers at most MAX_HOSTS
    per project, so a flood of invented hosts neither grows its memory nor gets webhooks there signed."""
    import dataclasses

    from ml_backend.labelstudio.webhooks import WEBHOOK_HEADER
    from ml_backend.service.service import MAX_HOSTS

    _, tasks = dataset
    app, service = make_app(dataclasses.replace(config, webhook_wait=60),
                            [rate(t, 50 + i) for i, t in enumerate(tasks[:3])] + tasks[3:])
    studio = service._client_factory
    hosts = [f"backend-{i}:9090" for i in range(MAX_HOSTS + 3)]
    studio.webhooks_list = [{"id": i, "url": f"http://{host}/webhook", "headers": {}} for i, host in enumerate(hosts)]
    client = app.test_client()
    for host in hosts:
        assert client.post("/setup", json=setup_body(), headers={"Host": host}).status_code == 200
    assert service.wait_idle(60)
    studio.tasks = [rate(t, 50 + i) for i, t in enumerate(tasks[:4])] + tasks[4:]
    rated = {"action": "ANNOTATION_CREATED", "task": {"id": tasks[3]["id"]}, "project": {"id": PROJECT}}
    assert client.post("/webhook", json=rated).json["status"] == "trained"  # a retrain signs the new hosts
    signed = [WEBHOOK_HEADER in hook["headers"] for hook in studio.webhooks_list]
    assert signed == [True] * MAX_HOSTS + [False] * 3
    assert len(service._hosts[PROJECT]) == MAX_HOSTS


def _three_rated_and_counting_exports(config, tasks, **settings):
    """A backend (webhooks answered once trained) on a project with 3 rated tasks, set up and
    caught up (the full export), and the list that each later full export appends to."""
    import dataclasses

    app, service = make_app(dataclasses.replace(config, webhook_wait=60, **settings),
                            [rate(t, 50 + i) for i, t in enumerate(tasks[:3])] + tasks[3:])
    studio = service._client_factory
    client = app.test_client()
    client.post("/setup", json=setup_body())
    assert service.wait_idle(60)  # catch-up: the full export
    exports: list[int] = []
    original = studio.export_tasks
    studio.export_tasks = lambda self, pid: exports.append(pid) or original(self, pid)
    return client, service, studio, exports


def test_an_unwritable_state_folder_leaves_webhooks_unsigned_and_fetched(config, dataset, tmp_path) -> None:
    """Without a secret (the state folder cannot hold one) nothing is signed and no token verifies:
    retrains work as before, fetching each rated task."""
    import dataclasses

    from ml_backend.labelstudio.webhooks import WEBHOOK_HEADER

    _, tasks = dataset
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    app, service = make_app(dataclasses.replace(config, webhook_wait=60),
                            [rate(t, 50 + i) for i, t in enumerate(tasks[:3])] + tasks[3:])
    service.signer._path = blocked / "webhook-secret"
    studio = service._client_factory
    studio.webhooks_list = [{"id": 1, "url": "http://localhost/webhook", "headers": {}}]
    client = app.test_client()
    client.post("/setup", json=setup_body())
    assert service.wait_idle(60) and studio.webhooks_list[0]["headers"] == {}
    assert not service.signer.verifies(PROJECT, "0" * 64)
    studio.tasks = [rate(t, 50 + i) for i, t in enumerate(tasks[:4])] + tasks[4:]
    payload = {"action": "ANNOTATION_CREATED", "task": {"id": tasks[3]["id"]}, "project": {"id": PROJECT}}
    assert client.post("/webhook", json=payload, headers={WEBHOOK_HEADER: "0" * 64}).json["status"] == "trained"
    assert service.model(PROJECT).state.labels[str(tasks[3]["id"])]["mos"] == 53
