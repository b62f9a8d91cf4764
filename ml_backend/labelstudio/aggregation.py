"""Human MOS per task from Label Studio's task export: votes (one per rater and image), screened
by the chosen method (``ratings.screening``), averaged or modelled into a MOS with its interval."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..ratings import SCREENINGS
from ..ratings.screening import ScreenResult
from ..ratings.votes import Vote, VoteTable
from .label_config import ScoreTag

_NO_TIME = datetime.min.replace(tzinfo=timezone.utc)
#: Task data fields of a gold image: the range of MOS a careful rater gives it (``seed --gold``).
GOLD_KEYS = ("gold_min", "gold_max")


@dataclass(frozen=True)
class RatingStats:
    """One image's MOS from its accepted raters: their number, the sample std of their scores
    (None below two: undefined, not zero), the 95 % half-width (None where undefined), ratings of
    rejected raters left out, and the screening method that made it."""

    mean: float
    n: int
    std: float | None
    ci95: float | None = None
    n_rejected: int = 0
    method: str = "none"


def task_votes(tasks: Iterable[dict[str, Any]], tag: ScoreTag,
               emails: Mapping[int, str] | None = None) -> list[Vote]:
    """Every annotation as a vote, skipped ones (cancelled) included with no score, in task order."""
    votes = []
    for task in tasks:
        for annotation in task.get("annotations") or []:
            cancelled = bool(annotation.get("was_cancelled"))
            value = None if cancelled else tag.read(annotation.get("result") or [])
            if value is None and not cancelled:
                continue  # no answer for this tag (another control of the config)
            user = _user(annotation)
            lead = annotation.get("lead_time")
            rater = f"user:{user}" if user is not None else f"annotation:{annotation.get('id')}"
            votes.append(Vote(
                item=int(task["id"]), rater=rater,
                score=value, email=(emails or {}).get(user, "") if user is not None else "",
                created=str(annotation.get("created_at") or ""), updated=str(annotation.get("updated_at") or ""),
                lead_time=float(lead) if isinstance(lead, int | float) and not isinstance(lead, bool) else None,
                annotation_id=int(annotation["id"]) if isinstance(annotation.get("id"), int) else None,
            ))
    return votes


def counted(votes: Iterable[Vote]) -> list[Vote]:
    """The votes that count: a rater who rated an image more than once counts once, with their
    latest rating (by ``updated_at``, then ``created_at``, then annotation id), so a correction
    replaces the original instead of doubling that rater's weight; skipped ones never count."""
    latest: dict[tuple[Any, str], tuple[tuple[datetime, datetime, int], Vote]] = {}
    for vote in votes:
        if vote.score is None:
            continue
        order = (_time(vote.updated), _time(vote.created), vote.annotation_id or 0)
        key = (vote.item, vote.rater)
        if key not in latest or order >= latest[key][0]:
            latest[key] = (order, vote)
    return [vote for _, vote in latest.values()]


def gold_ranges(tasks: Iterable[dict[str, Any]]) -> dict[int, tuple[float, float]]:
    """task id -> (lowest, highest) MOS expected of a gold image."""
    ranges = {}
    for task in tasks:
        data = task.get("data") if isinstance(task.get("data"), dict) else {}
        low, high = (data.get(key) for key in GOLD_KEYS)
        if isinstance(low, int | float) and isinstance(high, int | float):
            ranges[int(task["id"])] = (float(low), float(high))
    return ranges


@dataclass(frozen=True)
class Screened:
    """A project's votes (every annotation), the ones that count (``counted``) and their table,
    its gold ranges and the screening's verdict."""

    votes: list[Vote]
    counted: list[Vote]
    table: VoteTable
    gold: dict[int, tuple[float, float]]
    result: ScreenResult

    def ratings(self) -> dict[int, RatingStats]:
        """task id -> its MOS; tasks without an accepted rating are left out."""
        rejected = self.result.rejected_counts(self.table)
        r = self.result
        return {int(item): RatingStats(float(r.mos[i]), int(r.n[i]), _defined(r.std[i]), _defined(r.ci95[i]),
                                       int(rejected[i]), r.method)
                for i, item in enumerate(r.items) if r.n[i] > 0}

    def scores_by_task(self) -> dict[int, list[float]]:
        """task id -> the counted score of each of its raters, screening aside."""
        scores: dict[int, list[float]] = {}
        for vote in self.counted:
            scores.setdefault(int(vote.item), []).append(float(vote.score))  # type: ignore[arg-type]
        return scores


class TaskReader:
    """``task_votes`` and ``gold_ranges`` with a memory: a task object read by the previous call
    is not parsed again (the backend's retrain after one rating gets the same objects back for
    every task but the rated one)."""

    def __init__(self, tag: ScoreTag, emails: Mapping[int, str] | None = None) -> None:
        self.tag, self.emails = tag, emails
        self._read: dict[int, tuple[dict[str, Any], list[Vote], tuple[float, float] | None]] = {}

    def __call__(self, tasks: Iterable[dict[str, Any]]) -> tuple[list[Vote], dict[int, tuple[float, float]]]:
        read, votes, gold = {}, [], {}
        for task in tasks:
            entry = self._read.get(id(task))
            if entry is None or entry[0] is not task:  # the object is kept, so its id is not reused
                entry = (task, task_votes([task], self.tag, self.emails), gold_ranges([task]).get(int(task["id"])))
            read[id(task)] = entry
            votes.extend(entry[1])
            if entry[2] is not None:
                gold[int(task["id"])] = entry[2]
        self._read = read
        return votes, gold


def screen_tasks(tasks: Iterable[dict[str, Any]], tag: ScoreTag, screening: str = "none",
                 params: Mapping[str, Any] | None = None, emails: Mapping[int, str] | None = None,
                 reader: TaskReader | None = None) -> Screened:
    """What the export, the report and the backend all make of a project's annotations;
    ``reader`` (for ``tag``) remembers the tasks of an earlier call."""
    votes, gold = (reader or TaskReader(tag, emails))(tasks)
    kept = counted(votes)
    table = VoteTable.from_votes(kept)
    return Screened(votes, kept, table, gold, SCREENINGS.create(screening, params).screen(table, gold))


def aggregate_ratings(tasks: Iterable[dict[str, Any]], tag: ScoreTag, screening: str = "none",
                      params: Mapping[str, Any] | None = None, reader: TaskReader | None = None
                      ) -> dict[int, RatingStats]:
    """task id -> its MOS; tasks without an accepted rating are left out."""
    return screen_tasks(tasks, tag, screening, params, reader=reader).ratings()


def _defined(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _user(annotation: dict[str, Any]) -> int | None:
    user = annotation.get("completed_by")
    if isinstance(user, dict):
        user = user.get("id")
    return user if isinstance(user, int) and not isinstance(user, bool) else None


def _time(raw: Any) -> datetime:
    """Parse Label Studio's ISO timestamps ("...Z" or "+00:00", naive = UTC); missing sorts first."""
    if not isinstance(raw, str) or not raw:
        return _NO_TIME
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return _NO_TIME
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
