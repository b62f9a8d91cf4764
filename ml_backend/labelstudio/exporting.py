"""Build MOS.csv rows from Label Studio tasks: human mean where rated, newest prediction elsewhere."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlparse

from ..errors import MissingPathError
from ..features.images import natural_key
from ..mos_csv import MOSRow, write_csv_file
from ..ratings import SCREENINGS
from ..ratings.raters import rater_stats
from .aggregation import RatingStats, aggregate_ratings, screen_tasks
from .client import LabelStudioClient
from .label_config import ScoreTag, parse_label_config, read_confidence
from .study_files import write_rater_report, write_votes


def image_name(task: dict[str, Any], tag: ScoreTag) -> str:
    """The seed stores ``image_name``; otherwise derive it from the image URL."""
    data = task.get("data", {})
    if data.get("image_name"):
        return str(data["image_name"])
    reference = str(data.get(tag.data_key, ""))
    parsed = urlparse(reference)
    local = parse_qs(parsed.query).get("d")
    return PurePosixPath(local[0] if local else parsed.path).name or f"task-{task.get('id')}"


@dataclass(frozen=True)
class Predicted:
    value: float  # the model's value (unrounded when the backend stored it so)
    model_version: str
    confidence: float | None


def newest_predictions(predictions: Iterable[dict[str, Any]], tag: ScoreTag) -> dict[int, Predicted]:
    """task id -> its most recent prediction that holds a value."""
    newest: dict[int, tuple[tuple[str, int], Predicted]] = {}
    for prediction in predictions:
        value = tag.read_precise(prediction.get("result") or [])
        task_id = prediction.get("task")
        if value is None or not isinstance(task_id, int):
            continue
        order = (str(prediction.get("created_at") or ""), int(prediction.get("id") or 0))
        if task_id not in newest or order > newest[task_id][0]:
            confidence = read_confidence(prediction)
            newest[task_id] = (order, Predicted(value, str(prediction.get("model_version") or ""), confidence))
    return {task_id: predicted for task_id, (_, predicted) in newest.items()}


def build_rows(
    tasks: list[dict[str, Any]], predictions: Iterable[dict[str, Any]], tag: ScoreTag,
    ratings: Mapping[int, RatingStats] | None = None,
) -> tuple[list[MOSRow], list[str]]:
    """Rows sorted numerically by image name, and the names of images with neither value.
    ``ratings``: the tasks' MOS (default: ``aggregate_ratings`` without screening)."""
    ratings = aggregate_ratings(tasks, tag) if ratings is None else ratings
    predicted = newest_predictions(predictions, tag)
    rows: list[MOSRow] = []
    missing: list[str] = []
    for task in tasks:
        name = image_name(task, tag)
        task_id = task["id"]
        if task_id in ratings:
            stats = ratings[task_id]
            rows.append(MOSRow(name, stats.mean, "human", stats.n, stats.std, ci95=stats.ci95,
                               n_rejected=stats.n_rejected, aggregation=stats.method))
        elif task_id in predicted:
            p = predicted[task_id]
            rows.append(MOSRow(name, p.value, "predicted", 0, None, p.model_version, p.confidence))
        else:
            missing.append(name)
    rows.sort(key=lambda row: natural_key(row.image_name))
    missing.sort(key=natural_key)
    return rows, missing


@dataclass(frozen=True)
class ExportReport:
    out: Path
    n_human: int
    n_predicted: int
    missing: list[str]  # images with neither a rating nor a prediction (not in the CSV)
    screening: str = "none"
    #: rater -> why the screening rejected them
    rejected: dict[str, str] = field(default_factory=dict)
    #: images whose every rating came from rejected raters (their MOS is the prediction)
    lost_to_screening: int = 0
    #: the rater report's PNG, when written
    raters_png: Path | None = None


@dataclass(frozen=True)
class StudyFiles:
    """What ``export`` writes beside MOS.csv (None: not asked for)."""

    votes: Path | None = None
    raters_report: Path | None = None


def export_project(client: LabelStudioClient, project_id: int, out: Path, details: bool = False,
                   refresh: bool = True, progress: Callable[[str], None] = lambda _: None,
                   screening: str = "none", study: StudyFiles = StudyFiles()) -> ExportReport:
    """Write MOS.csv for a project (and the study files asked for). With ``refresh``, Label
    Studio first asks the connected backend for predictions of the current model for the unrated
    images that have none of the project's model version (the backend stores them after every
    retrain: usually none are missing). Nothing is written on failure."""
    for path in (out, study.votes, study.raters_report):
        if path is not None and not path.parent.is_dir():
            raise MissingPathError(f"output folder {path.parent} does not exist")
    SCREENINGS.create(screening)  # an unknown method fails before any request
    client.check()
    project = client.get_project(project_id)
    tag = parse_label_config(str(project.label_config))
    progress("reading the tasks and their annotations")
    tasks = client.export_tasks(project_id)
    screened = screen_tasks(tasks, tag, screening,
                            emails=client.user_emails() if study.votes or study.raters_report else None)
    result, table = screened.result, screened.table
    rated = screened.ratings()
    lost = sum(1 for i, n in enumerate(result.n) if n == 0 and table.counts[i] > 0)
    progress(f"{len(tasks)} tasks, {len(screened.votes)} annotations by {len(table.raters)} raters "
             f"(screening {screening}: {len(result.rejected)} rejected); reading the predictions")
    predictions = client.predictions(project_id)
    if refresh and client.ml_backends(project_id):
        current = {p["task"] for p in predictions if p["model_version"] == project.model_version and p["result"]}
        stale = [task["id"] for task in tasks if task["id"] not in rated and task["id"] not in current]
        if stale:
            progress(f"asking the backend (through Label Studio) for predictions of {len(stale)} images")
            client.retrieve_predictions(project_id, stale)
            predictions = client.predictions(project_id)
    rows, missing = build_rows(tasks, predictions, tag, rated)
    names = {int(task["id"]): image_name(task, tag) for task in tasks}
    write_csv_file(rows, out, details)
    if study.votes:
        write_votes(study.votes, screened.votes, names, {v.annotation_id for v in screened.counted}, result)
    png = None
    if study.raters_report:
        stats = rater_stats(table, screened.votes, result, screened.gold)
        png = write_rater_report(study.raters_report, stats, screening, progress)
    human = sum(row.source == "human" for row in rows)
    return ExportReport(out, human, len(rows) - human, missing, screening, result.rejected, lost, png)
