"""Human MOS per task from Label Studio's task export: one vote per rater, averaged over raters."""
from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .label_config import ScoreTag

_NO_TIME = datetime.min.replace(tzinfo=timezone.utc)


@dataclass
class RatingStats:
    """Mean over raters, number of raters, and their sample std (ddof=1; None for one rater:
    undefined, not zero)."""

    mean: float
    n: int
    std: float | None


def aggregate_ratings(tasks: Iterable[dict[str, Any]], tag: ScoreTag) -> dict[int, RatingStats]:
    """task id -> ratings of that task; tasks without a usable rating are left out.

    Cancelled (skipped) annotations and annotations without a value for ``tag`` are ignored. A
    rater who annotated a task more than once counts once, with their latest annotation (by
    ``updated_at``, then ``created_at``, then annotation id), so a correction replaces the
    original instead of doubling that rater's weight.
    """
    stats: dict[int, RatingStats] = {}
    for task_id, values in rater_votes(tasks, tag).items():
        std = statistics.stdev(values) if len(values) >= 2 else None
        stats[task_id] = RatingStats(statistics.fmean(values), len(values), std)
    return stats


def rater_votes(tasks: Iterable[dict[str, Any]], tag: ScoreTag) -> dict[int, list[float]]:
    """task id -> one vote per rater (the rules of ``aggregate_ratings``)."""
    votes: dict[int, list[float]] = {}
    for task in tasks:
        latest: dict[Any, tuple[tuple[datetime, datetime, int], float]] = {}
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            value = tag.read(annotation.get("result") or [])
            if value is None:
                continue
            rater = _rater(annotation)
            order = (
                _time(annotation.get("updated_at")),
                _time(annotation.get("created_at")),
                int(annotation.get("id") or 0),
            )
            if rater not in latest or order >= latest[rater][0]:
                latest[rater] = (order, value)
        if latest:
            votes[int(task["id"])] = [value for _, value in latest.values()]
    return votes


def _rater(annotation: dict[str, Any]) -> Any:
    """The user id; an annotation with no known author counts as a rater of its own."""
    user = annotation.get("completed_by")
    if isinstance(user, dict):
        user = user.get("id")
    return ("user", user) if user is not None else ("annotation", annotation.get("id"))


def _time(raw: Any) -> datetime:
    """Parse Label Studio's ISO timestamps ("...Z" or "+00:00", naive = UTC); missing sorts first."""
    if not isinstance(raw, str) or not raw:
        return _NO_TIME
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return _NO_TIME
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
