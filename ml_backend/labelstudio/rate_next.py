"""The order in which the label stream hands out images: representatives first, then the least
confident predictions.

Label Studio 1.23's stream ignores a Data Manager tab's order, but its "Uncertainty sampling"
(settable through the API in the community edition) hands out the lowest prediction ``score`` of
the project's model version first. So the prediction ``score`` carries the order: unrated
representatives get scores below ``FLOOR`` in pick order, every other image its confidence (at
least ``FLOOR``), and the near-duplicates the seed marked (``DUPLICATE_KEY``, ``seed
--duplicates-last``) ``DUPLICATE_OFFSET`` plus theirs, after every other image. The model's own
confidence is kept in the prediction for the export (``label_config.read_confidence``). Before
the first rating the seed stores empty predictions of ``SEED_VERSION`` for the representatives, so
the stream starts with them.
"""
from __future__ import annotations

from typing import Any

#: Model version of the seed's placeholder predictions (replaced by the backend's first model).
SEED_VERSION = "representatives"
#: Scores below this are the representatives' places in the queue.
FLOOR = 0.001
#: Task data field of a near-duplicate to rate last: the name of its group's image rated first.
DUPLICATE_KEY = "near_duplicate_of"
#: Added to a marked near-duplicate's score: above every confidence (0-1), so it comes last.
DUPLICATE_OFFSET = 1.0
#: The Data Manager tab that shows the stream's order.
TAB_TITLE = "Rate next"
TAB_ORDERING = ["tasks:predictions_score"]


def representative_scores(count: int) -> list[float]:
    """Scores for ``count`` unrated representatives in pick order: increasing, all below FLOOR."""
    return [round(FLOOR * (rank + 1) / (count + 1), 8) for rank in range(count)]


def queue_score(confidence: float, duplicate: bool = False) -> float:
    """The score of an image that is not a representative: its confidence, kept above them; a
    marked near-duplicate's after every other image."""
    return round(max(confidence, FLOOR) + (DUPLICATE_OFFSET if duplicate else 0.0), 4)


def placeholders(task_ids: list[int]) -> list[dict[str, Any]]:
    """Empty predictions that put these representative tasks first in the stream, in this order."""
    return [{"task": task_id, "result": [], "score": score, "model_version": SEED_VERSION}
            for task_id, score in zip(task_ids, representative_scores(len(task_ids)), strict=True)]
