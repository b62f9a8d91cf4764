"""One vote per rater and image, and the image x rater table the screening methods work on."""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Vote:
    """One rating as a study analysis needs it. ``score`` is None for a skipped image."""

    item: Hashable  # the image (a task id)
    rater: str  # a stable key: "user:3", or "annotation:17" for an unknown author
    score: float | None
    email: str = ""
    created: str = ""  # ISO time, as Label Studio stores it
    updated: str = ""
    lead_time: float | None = None  # seconds Label Studio measured on the labelling view
    annotation_id: int | None = None

    @property
    def skipped(self) -> bool:
        return self.score is None


@dataclass(frozen=True)
class VoteTable:
    """``scores[i, r]``: rater ``raters[r]``'s score of image ``items[i]``, NaN where they gave none."""

    items: list[Hashable]
    raters: list[str]
    scores: np.ndarray

    @classmethod
    def from_votes(cls, votes: Iterable[Vote], items: Sequence[Hashable] | None = None) -> VoteTable:
        """Skipped votes are left out; one vote per (image, rater) is expected (the latest: the
        caller's job). ``items`` fixes the row order (default: first appearance)."""
        kept = [v for v in votes if v.score is not None]
        order = list(items) if items is not None else list(dict.fromkeys(v.item for v in kept))
        raters = sorted({v.rater for v in kept})
        row = {item: i for i, item in enumerate(order)}
        column = {rater: r for r, rater in enumerate(raters)}
        scores = np.full((len(order), len(raters)), np.nan)
        for vote in kept:
            if vote.item in row:
                scores[row[vote.item], column[vote.rater]] = vote.score
        return cls(order, raters, scores)

    @property
    def counts(self) -> np.ndarray:
        """Ratings per image."""
        return np.sum(~np.isnan(self.scores), axis=1)

    def without(self, raters: Iterable[str]) -> VoteTable:
        """The same images without these raters' columns."""
        drop = set(raters)
        keep = [r for r, rater in enumerate(self.raters) if rater not in drop]
        return VoteTable(self.items, [self.raters[r] for r in keep], self.scores[:, keep])
