"""Label Studio's ML backend protocol: what /setup and /predict bodies must hold, and the answers.

Every field is checked here, before any work, so the service only sees well-formed requests and a
bad one gets a 400 naming the field.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from ..errors import LabelConfigError, RequestError
from ..labelstudio.label_config import ScoreTag, parse_label_config
from ..labelstudio.webhooks import parse_project_id


@dataclass(frozen=True)
class SetupRequest:
    project_id: int
    hostname: str
    access_token: str
    #: Per-project predictor settings: ``predictor`` and that predictor's parameters.
    extra_params: dict[str, Any]


@dataclass(frozen=True)
class PredictRequest:
    project_id: int
    tag: ScoreTag
    tasks: list[dict[str, Any]]

    def references(self) -> list[str]:
        """Each task's image reference (empty when absent or not a string), in request order."""
        references = []
        for task in self.tasks:
            data = task.get("data")
            value = data.get(self.tag.data_key) if isinstance(data, dict) else None
            references.append(value if isinstance(value, str) else "")
        return references


def parse_setup(payload: Any) -> SetupRequest:
    if not isinstance(payload, dict):
        raise RequestError("setup body must be a JSON object")
    project_id = parse_project_id(payload.get("project"))
    if project_id is None:
        raise RequestError("setup body has no usable 'project' field")
    schema = payload.get("schema")
    if isinstance(schema, str) and schema:
        try:
            parse_label_config(schema)
        except LabelConfigError as exc:
            raise RequestError(f"project {project_id}: {exc}") from None
    hostname = payload.get("hostname") or ""
    if not isinstance(hostname, str) or (hostname and urlparse(hostname).scheme not in ("http", "https")):
        raise RequestError(f"setup 'hostname' must be an http(s) URL, got {hostname!r:.100}")
    token = payload.get("access_token") or ""
    if not isinstance(token, str):
        raise RequestError("setup 'access_token' must be a string")
    return SetupRequest(project_id, hostname.rstrip("/"), token, _extra_params(payload.get("extra_params")))


def parse_predict(payload: Any) -> PredictRequest:
    if not isinstance(payload, dict) or not isinstance(payload.get("tasks"), list):
        raise RequestError("predict body must be a JSON object with a 'tasks' list")
    tasks = payload["tasks"]
    if not all(isinstance(task, dict) for task in tasks):
        raise RequestError("every entry of 'tasks' must be a JSON object")
    project_id = parse_project_id(payload.get("project"))
    if project_id is None and tasks:
        project_id = parse_project_id(tasks[0].get("project"))
    if project_id is None:
        raise RequestError("predict body has no usable 'project' field")
    label_config = payload.get("label_config")
    if not isinstance(label_config, str) or not label_config:
        raise RequestError("predict body has no 'label_config'")
    try:
        tag = parse_label_config(label_config)
    except LabelConfigError as exc:
        raise RequestError(str(exc)) from None
    return PredictRequest(project_id, tag, tasks)


def _extra_params(extra: Any) -> dict[str, Any]:
    if extra in (None, "", {}):
        return {}
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            raise RequestError("extra_params is not valid JSON") from None
    if not isinstance(extra, dict):
        raise RequestError("extra_params must be a JSON object")
    return dict(extra)


def prediction(tag: ScoreTag, value: float, confidence: float, version: str) -> dict[str, Any]:
    """One task's answer (``ScoreTag.prediction_result``), the confidence as ``score``."""
    return {
        "result": tag.prediction_result(value, confidence, version),
        "score": round(min(max(confidence, 0.0), 1.0), 4),
        "model_version": version,
    }


def empty_prediction(version: str) -> dict[str, Any]:
    """The answer for a task whose image cannot be used."""
    return {"result": [], "score": 0.0, "model_version": version}
