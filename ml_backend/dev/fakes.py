"""Stand-ins for Label Studio where a test or benchmark measures the backend alone.

The end-to-end tests use a real Label Studio; these serve a fixed export the way
``LabelStudioClient`` would, so the service's own work can be timed or checked in-process.
"""
from __future__ import annotations

from typing import Any

from ..labelstudio.label_config import bundled_config


def export_only_label_studio(tasks: list[dict[str, Any]], label_config: str | None = None) -> type:
    """A client class (``client_factory`` for ``MOSService``) whose project has ``tasks``;
    assign ``.tasks`` on the class to change the export."""
    config = label_config if label_config is not None else bundled_config("number_0_100.xml").read_text()

    class ExportOnlyLabelStudio:
        def __init__(self, url: str, api_key: str) -> None:
            self.url = url

        def get_label_config(self, project_id: int) -> str:
            return config

        def export_tasks(self, project_id: int) -> list[dict[str, Any]]:
            return ExportOnlyLabelStudio.tasks

    ExportOnlyLabelStudio.tasks = tasks  # type: ignore[attr-defined]
    return ExportOnlyLabelStudio


def number_result(value: float, from_name: str = "mos", kind: str = "number") -> list[dict[str, Any]]:
    """An annotation's result list for the shipped configs' score tag."""
    return [{"from_name": from_name, "to_name": "image", "type": kind, "value": {kind: value}}]
