"""Interpret the webhook events Label Studio 1.23 sends to an ML backend.

Label Studio posts ``{action, project, ...}`` inside the annotator's request with a 1 s timeout, so
this module only decides *whether* to retrain; the training itself runs in the background.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import WebhookError

#: Events after which the labelled set may have changed.
RETRAIN_ACTIONS = frozenset(
    {
        "ANNOTATION_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATIONS_CREATED",
        "ANNOTATIONS_DELETED",
        "START_TRAINING",
    }
)
#: Events Label Studio sends that need no work from us.
KNOWN_IGNORED_ACTIONS = frozenset(
    {"TASKS_CREATED", "TASKS_DELETED", "PROJECT_CREATED", "PROJECT_UPDATED", "PROJECT_DELETED"}
)


#: The header Label Studio sends with a webhook the backend signed (``service.webhook_auth``).
WEBHOOK_HEADER = "X-MOS-Webhook-Token"
#: Events about one task's annotations: the retrain can fetch that task alone.
TASK_ACTIONS = frozenset({"ANNOTATION_CREATED", "ANNOTATION_UPDATED"})
#: Events after which the project's task list or label config must be read again.
REFRESH_ACTIONS = frozenset({"TASKS_CREATED", "TASKS_DELETED", "PROJECT_UPDATED", "ANNOTATIONS_DELETED"})


@dataclass(frozen=True)
class WebhookEvent:
    action: str
    project_id: int | None
    #: The annotated task (TASK_ACTIONS only), as the webhook names it: unverified.
    task_id: int | None = None
    #: PROJECT_UPDATED: the project's label config as the webhook states it (unverified; lets
    #: the backend tell its own updates, e.g. the model version, from a config change).
    label_config: str | None = None
    #: TASK_ACTIONS: the annotation as the webhook states it (unverified), when it names this task.
    annotation: dict[str, Any] | None = None

    @property
    def triggers_training(self) -> bool:
        return self.action in RETRAIN_ACTIONS

    @property
    def known(self) -> bool:
        return self.action in RETRAIN_ACTIONS or self.action in KNOWN_IGNORED_ACTIONS


#: Largest project id accepted (Label Studio's ids are database integers).
MAX_ID = 2**63 - 1


def parse_project_id(value: Any) -> int | None:
    """A project (or task) id. Project ids arrive as ``{"id": 3, ...}``, ``3``, or ``"3.1700000000"`` (id.created-at in
    /setup). Only positive ids written with ASCII digits count ("٣" is a digit to Python)."""
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        head = value.split(".", 1)[0].strip()
        value = int(head) if head.isascii() and head.isdigit() and len(head) <= 19 else None
    if isinstance(value, int) and 0 < value <= MAX_ID:
        return value
    return None


def parse_webhook(payload: Any) -> WebhookEvent:
    if not isinstance(payload, dict):
        raise WebhookError("webhook body must be a JSON object")
    action = payload.get("action")
    if not isinstance(action, str) or not action:
        raise WebhookError("webhook body has no 'action' field")
    project_id = parse_project_id(payload.get("project"))
    if project_id is None:
        # Annotation events also carry the project inside the task.
        task = payload.get("task")
        if isinstance(task, dict):
            project_id = parse_project_id(task.get("project"))
    if action in RETRAIN_ACTIONS and project_id is None:
        raise WebhookError(f"webhook {action} has no usable 'project' field")
    task = payload.get("task")
    task_id = parse_project_id(task) if action in TASK_ACTIONS and isinstance(task, dict) else None
    project = payload.get("project")
    label_config = project.get("label_config") if action == "PROJECT_UPDATED" and isinstance(project, dict) else None
    annotation = payload.get("annotation")
    if not (task_id is not None and isinstance(annotation, dict) and isinstance(annotation.get("id"), int)
            and parse_project_id(annotation.get("task", task_id)) == task_id):
        annotation = None
    return WebhookEvent(action=action, project_id=project_id, task_id=task_id,
                        label_config=label_config if isinstance(label_config, str) else None, annotation=annotation)
