"""Per-project backend state on disk, so a restarted backend keeps its labels and model version.

Only what cannot be recomputed cheaply is stored: the labels the model was trained on, the image of
each labelled task, the version counter and the settings. The fitted predictor is rebuilt from these
and the feature cache on load (milliseconds), which keeps pickles out of the state folder.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..config import DEFAULTS
from ..errors import UserError

log = logging.getLogger(__name__)

UNTRAINED = "untrained"


@dataclass
class ProjectState:
    project_id: int
    version: int = 0
    model_version: str = UNTRAINED
    predictor: str = DEFAULTS.predictor
    predictor_params: dict[str, Any] = field(default_factory=dict)
    #: task id (as str, JSON keys are strings) -> {"image": reference, "mos": float, "n": raters,
    #: "var": the MOS's variance or None (service._mos_variances)}
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    label_config: str = ""
    trained_at: float | None = None
    train_ms: float | None = None
    #: The Label Studio this project was first set up from, when no LABEL_STUDIO_URL is configured:
    #: a /setup naming another host is refused (the token never leaves for a foreign host).
    label_studio_url: str = ""


def _check_state(data: Any) -> ProjectState:
    """A ``ProjectState`` from parsed JSON, every field of the type it must have; ValueError else."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    known = {f.name for f in fields(ProjectState)}
    if set(data) - known:
        raise ValueError(f"unknown fields {sorted(set(data) - known)}")
    state = ProjectState(**data)
    checks = {
        "project_id": isinstance(state.project_id, int) and not isinstance(state.project_id, bool),
        "version": isinstance(state.version, int) and not isinstance(state.version, bool) and state.version >= 0,
        "model_version": isinstance(state.model_version, str),
        "predictor": isinstance(state.predictor, str),
        "predictor_params": isinstance(state.predictor_params, dict),
        "labels": isinstance(state.labels, dict),
        "label_config": isinstance(state.label_config, str),
        "trained_at": state.trained_at is None or _number(state.trained_at),
        "train_ms": state.train_ms is None or _number(state.train_ms),
        "label_studio_url": isinstance(state.label_studio_url, str),
    }
    for name, ok in checks.items():
        if not ok:
            raise ValueError(f"field {name!r} has the wrong type")
    for task_id, label in state.labels.items():
        if not (task_id.isascii() and task_id.isdigit() and isinstance(label, dict)
                and isinstance(label.get("image"), str) and _number(label.get("mos"))
                and isinstance(label.get("n"), int) and (label.get("var") is None or _number(label["var"]))):
            raise ValueError(f"label of task {task_id!r} is malformed")
    return state


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class StateStore:
    """Reads and atomically writes ``<root>/project-<id>.json``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, project_id: int) -> Path:
        return self.root / f"project-{project_id}.json"

    def load(self, project_id: int) -> ProjectState | None:
        """The saved state, or None: none saved, or one that cannot be used, which is moved aside
        (``.corrupt-<time>``) so that the next retrain rebuilds the project from Label Studio."""
        path = self.path(project_id)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            return self._set_aside(path, f"cannot read it: {exc}")
        try:
            state = _check_state(json.loads(text))
        except (ValueError, TypeError, RecursionError) as exc:
            return self._set_aside(path, str(exc))
        if state.project_id != project_id:
            return self._set_aside(path, f"it holds project {state.project_id}")
        return state

    def _set_aside(self, path: Path, why: str) -> None:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        try:
            path.replace(aside)
            log.error("backend state %s is unusable (%s): moved to %s; the project is rebuilt from "
                      "Label Studio at its next retrain", path, why, aside.name)
        except OSError as exc:
            log.error("backend state %s is unusable (%s) and cannot be moved aside (%s)", path, why, exc)
        return None

    def save(self, state: ProjectState) -> None:
        """Write to a temporary file and rename, so a crash never leaves half a state file."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".project-", suffix=".tmp")
        except OSError as exc:
            raise UserError(f"cannot write backend state in {self.root}: {exc.strerror or exc}") from None
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
