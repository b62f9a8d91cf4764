"""Stand-ins for Label Studio where a test or benchmark measures the backend alone.

The end-to-end tests use a real Label Studio; these serve a fixed export the way
``LabelStudioClient`` would, so the service's own work can be timed or checked in-process.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from ..labelstudio.label_config import blind, bundled_config


def export_only_label_studio(tasks: list[dict[str, Any]], label_config: str | None = None,
                             project_id: int | None = None) -> type:
    """A client class (``client_factory`` for ``MOSService``) whose project (``project_id``) has
    ``tasks``; assign ``.tasks`` on the class to change the export."""
    config = label_config if label_config is not None else blind(bundled_config("number_0_100.xml").read_text())

    class ExportOnlyLabelStudio:
        def __init__(self, url: str, api_key: str) -> None:
            self.url = url

        def get_label_config(self, project_id: int) -> str:
            return config

        def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
            return ExportOnlyLabelStudio.tasks

        def task(self, task_id: int) -> dict[str, Any]:
            task = next(t for t in ExportOnlyLabelStudio.tasks if t["id"] == task_id)
            return {"project": project_id, **task}

        # What the backend publishes is kept on the class: ``.predictions``, ``.model_version``.
        def import_predictions(self, project_id: int, predictions: list[dict[str, Any]],
                               one_by_one: bool = False) -> int:
            stored = ExportOnlyLabelStudio.predictions
            stored.extend({**item, "id": len(stored) + i + 1} for i, item in enumerate(predictions))
            return len(predictions)

        def task_predictions(self, task_id: int) -> list[dict[str, Any]]:
            return [p for p in ExportOnlyLabelStudio.predictions if p["task"] == task_id]

        def update_prediction(self, prediction_id: int, result: list[dict[str, Any]], score: float) -> None:
            found = next(p for p in ExportOnlyLabelStudio.predictions if p.get("id") == prediction_id)
            found.update(result=result, score=score)

        def set_model_version(self, project_id: int, version: str) -> None:
            ExportOnlyLabelStudio.model_version = version

        def model_versions(self, project_id: int) -> dict[str, int]:
            return dict(Counter(p["model_version"] for p in ExportOnlyLabelStudio.predictions))

        def delete_model_version(self, project_id: int, version: str) -> None:
            ExportOnlyLabelStudio.predictions = [p for p in ExportOnlyLabelStudio.predictions
                                                 if p["model_version"] != version]

        # The project's webhooks: ``.webhooks_list`` (none unless a test adds them).
        def webhooks(self, project_id: int) -> list[dict[str, Any]]:
            return ExportOnlyLabelStudio.webhooks_list

        def set_webhook_headers(self, webhook_id: int, headers: dict[str, str]) -> None:
            next(h for h in ExportOnlyLabelStudio.webhooks_list if h["id"] == webhook_id)["headers"] = headers

    ExportOnlyLabelStudio.tasks = tasks  # type: ignore[attr-defined]
    ExportOnlyLabelStudio.predictions = []  # type: ignore[attr-defined]
    ExportOnlyLabelStudio.model_version = ""  # type: ignore[attr-defined]
    ExportOnlyLabelStudio.webhooks_list = []  # type: ignore[attr-defined]
    return ExportOnlyLabelStudio


def number_result(value: float, from_name: str = "mos", kind: str = "number") -> list[dict[str, Any]]:
    """An annotation's result list for the shipped configs' score tag."""
    return [{"from_name": from_name, "to_name": "image", "type": kind, "value": {kind: value}}]


class RecordingLabelStudio:
    """A Label Studio for ``seed_project`` that keeps projects and tasks in memory and records
    every call that writes, so a test can see what a seed did (or did not do) to the server."""

    url = "http://label-studio.invalid"

    def __init__(self) -> None:
        self.projects: dict[int, dict[str, Any]] = {}
        self.writes: list[str] = []

    def check(self) -> str:
        return "admin@example.com"

    def project_url(self, project_id: int) -> str:
        return f"{self.url}/projects/{project_id}/data"

    def find_project(self, title: str) -> int | None:
        return next((pid for pid, p in self.projects.items() if p["title"] == title), None)

    def get_project(self, project_id: int) -> dict[str, Any]:
        return self.projects[project_id]

    def create_project(self, title: str, label_config: str, raters: int = 1) -> int:
        self.writes.append("create_project")
        project_id = len(self.projects) + 1
        self.projects[project_id] = {"title": title, "label_config": label_config, "tasks": [], "backends": []}
        return project_id

    def set_raters(self, project_id: int, raters: int) -> None:
        self.writes.append("set_raters")

    def ensure_local_storage(self, project_id: int, folder: Any) -> None:
        self.writes.append("ensure_local_storage")

    def task_data(self, project_id: int) -> list[dict[str, Any]]:
        return [dict(task) for task in self.projects[project_id]["tasks"]]

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        self.writes.append("import_tasks")
        start = len(self.projects[project_id]["tasks"])
        self.projects[project_id]["tasks"].extend(tasks)
        return list(range(start + 1, start + len(tasks) + 1))

    def user_emails(self) -> dict[int, str]:
        return {}

    def configure_labelling(self, project_id: int, show_predictions: bool) -> None:
        self.writes.append("configure_labelling")
        self.projects[project_id]["show_predictions"] = show_predictions

    def ensure_view(self, project_id: int, title: str, ordering: list[str], hidden: list[str] | None = None) -> int:
        self.writes.append("ensure_view")
        self.projects[project_id].setdefault("views", {})[title] = ordering
        return 1

    def import_predictions(self, project_id: int, predictions: list[dict[str, Any]]) -> int:
        self.writes.append("import_predictions")
        self.projects[project_id].setdefault("predictions", []).extend(predictions)
        return len(predictions)

    def set_model_version(self, project_id: int, version: str) -> None:
        self.writes.append("set_model_version")
        self.projects[project_id]["model_version"] = version

    def ml_backends(self, project_id: int) -> list[dict[str, Any]]:
        return list(self.projects[project_id]["backends"])

    def add_ml_backend(self, project_id: int, url: str, basic_auth: Any = None) -> int:
        self.writes.append("add_ml_backend")
        self.projects[project_id]["backends"].append({"url": url})
        return 1
