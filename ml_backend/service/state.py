"""Per-project backend state on disk, so a restarted backend keeps its labels and model version.

Only what cannot be recomputed cheaply is stored: the labels the model was trained on, the image of
each labelled task, the version counter and the settings. The fitted predictor is rebuilt from these
and the feature cache on load (milliseconds), which keeps pickles out of the state folder.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import DEFAULTS
from ..errors import UserError

UNTRAINED = "untrained"


@dataclass
class ProjectState:
    project_id: int
    version: int = 0
    model_version: str = UNTRAINED
    predictor: str = DEFAULTS.predictor
    predictor_params: dict[str, Any] = field(default_factory=dict)
    #: task id (as str, JSON keys are strings) -> {"image": reference, "mos": float, "n": raters}
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    label_config: str = ""
    trained_at: float | None = None
    train_ms: float | None = None


class StateStore:
    """Reads and atomically writes ``<root>/project-<id>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, project_id: int) -> Path:
        return self.root / f"project-{project_id}.json"

    def load(self, project_id: int) -> ProjectState | None:
        path = self.path(project_id)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return ProjectState(**data)
        except (ValueError, TypeError) as exc:
            raise UserError(f"corrupt backend state file {path}: {exc}") from None

    def save(self, state: ProjectState) -> None:
        """Write to a temporary file and rename, so a crash never leaves half a state file."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".project-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                # One line: json's C encoder only runs without indent (many times faster).
                handle.write(json.dumps(vars(state), sort_keys=True))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path(state.project_id))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def project_ids(self) -> list[int]:
        if not self.root.exists():
            return []
        ids = []
        for path in self.root.glob("project-*.json"):
            suffix = path.stem.removeprefix("project-")
            if suffix.isdigit():
                ids.append(int(suffix))
        return sorted(ids)
