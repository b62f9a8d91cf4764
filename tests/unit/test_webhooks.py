"""Webhook payloads as Label Studio 1.23 sends them (shapes from ../shared/notes and a live capture)."""
from __future__ import annotations

import pytest

from ml_backend.labelstudio.webhooks import WebhookError, parse_project_id, parse_webhook

PROJECT = {"id": 7, "title": "MOS sample", "label_config": "<View/>", "model_version": "MOS Annotator"}
ANNOTATION = {"id": 11, "result": [], "was_cancelled": False, "task": 3, "project": 7, "completed_by": 1}
TASK = {"id": 3, "data": {"image": "/data/local-files/?d=a/img1.png"}, "project": 7}

PAYLOADS = {
    "ANNOTATION_CREATED": {"action": "ANNOTATION_CREATED", "annotation": ANNOTATION, "task": TASK, "project": PROJECT},
    "ANNOTATION_UPDATED": {"action": "ANNOTATION_UPDATED", "annotation": ANNOTATION, "task": TASK, "project": PROJECT},
    "ANNOTATIONS_DELETED": {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 11}], "project": PROJECT},
    "START_TRAINING": {"action": "START_TRAINING", "project": PROJECT},
    "TASKS_CREATED": {"action": "TASKS_CREATED", "tasks": [TASK], "project": PROJECT},
    "PROJECT_UPDATED": {"action": "PROJECT_UPDATED", "project": PROJECT},
}


@pytest.mark.parametrize("action",
                         ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "START_TRAINING"])
def test_label_changes_trigger_training(action: str) -> None:
    event = parse_webhook(PAYLOADS[action])
    assert event.action == action and event.project_id == 7
    assert event.triggers_training and event.known


@pytest.mark.parametrize("action", ["TASKS_CREATED", "PROJECT_UPDATED"])
def test_other_known_events_are_ignored(action: str) -> None:
    event = parse_webhook(PAYLOADS[action])
    assert event.known and not event.triggers_training


def test_unknown_event_is_not_an_error() -> None:
    event = parse_webhook({"action": "SOMETHING_NEW"})
    assert not event.known and not event.triggers_training and event.project_id is None


def test_project_found_inside_task_when_missing_at_top() -> None:
    payload = {"action": "ANNOTATION_CREATED", "annotation": ANNOTATION, "task": TASK}
    assert parse_webhook(payload).project_id == 7


@pytest.mark.parametrize("payload, message", [
    ([], "JSON object"),
    ({"project": PROJECT}, "no 'action'"),
    ({"action": ""}, "no 'action'"),
    ({"action": "ANNOTATION_CREATED", "project": "x"}, "no usable 'project'"),
])
def test_malformed_payloads_are_rejected(payload, message: str) -> None:
    with pytest.raises(WebhookError, match=message):
        parse_webhook(payload)


@pytest.mark.parametrize("value, expected", [
    ({"id": 4}, 4), (4, 4), ("4.1700000000", 4), ("12", 12), (None, None), (True, None), ("abc", None),
    ("\u0663", None), ("\u0663.1700000000", None), ("1\u0663", None), (0, None), (-3, None), (2**64, None),
    ("9" * 40, None), (4.0, None),
])
def test_project_id_forms(value, expected) -> None:
    assert parse_project_id(value) == expected
