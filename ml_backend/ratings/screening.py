"""Rater screening: which raters count, and each image's MOS with its 95 % interval.

Each method is a named choice (``export --screening``, ``MOS_SCREENING``; README "Several raters"):

- ``none``: every rater counts; MOS = mean.
- ``bt500``: ITU-R BT.500 subject rejection (Annex 1, A1-2.3.1): per image, a score beyond 2
  standard deviations (sqrt(20) when the image's scores are not normal by their kurtosis beta2)
  counts for its rater above (P) or below (Q); a rater is rejected when (P + Q) / their ratings
  > 5 % and |P - Q| / (P + Q) < 0.3. MOS = mean of the others. ``sureal``'s implementation, except
  that the denominator is the rater's own number of ratings (sureal: every image). With n scores
  per image none can be more than (n - 1) / sqrt(n) deviations from their mean, so the test
  needs 6 ratings per image to reject anyone.
- ``zscore``: each rater's scores z-scored (their own mean and spread: P.910 / P.913 practice, it
  removes offsets and scale use), compared with the other raters' mean z-score on the same
  images; a rater whose RMS difference exceeds ``threshold`` (z units; 1.0 is about a correlation
  of 0.5 with the others) on at least ``min_items`` shared images is rejected, as is one who gives
  every image the same score. MOS = mean of the others.
- ``mle``: the subject model of P.910 Annex E / P.913 (``subject_model``): MOS = each image's
  quality with the raters' biases removed and each rater weighted by their consistency; a rater
  whose inconsistency exceeds ``max_ratio`` times the raters' median is rejected and the model
  refitted without them.

Gold images (``seed --gold``), when given, reject every method's raters (``none`` aside) who
miss more than ``MAX_GOLD_MISSES`` of the gold images they rated, before the method's own rule.
Intervals: Student t for the means (t(0.975, n-1) s / sqrt(n), undefined for one rating); the
subject model's asymptotic normal interval for ``mle``.
"""
from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from ..registry import check_int
from .subject_model import fit_subject_model
from .votes import VoteTable

#: A rater who misses more than this share of the gold images they rated is rejected.
MAX_GOLD_MISSES = 0.25


@dataclass(frozen=True)
class ScreenResult:
    """Per image (the table's order): MOS (NaN without an accepted rating), accepted ratings,
    their std (NaN below 2) and the MOS's 95 % half-width (NaN where undefined)."""

    method: str
    items: list[Hashable]
    mos: np.ndarray
    n: np.ndarray
    std: np.ndarray
    ci95: np.ndarray
    #: rater -> why they were rejected
    rejected: dict[str, str] = field(default_factory=dict)
    #: per rater, where the method estimates it (``mle``)
    bias: dict[str, float] = field(default_factory=dict)
    inconsistency: dict[str, float] = field(default_factory=dict)

    def rejected_counts(self, table: VoteTable) -> np.ndarray:
        """Per image, how many of its ratings came from rejected raters."""
        columns = [r for r, rater in enumerate(table.raters) if rater in self.rejected]
        return np.sum(~np.isnan(table.scores[:, columns]), axis=1) if columns else np.zeros(len(table.items), int)


class Screening:
    """Base of the methods: gold first, then ``_reject``, then the MOS of who is left."""

    name = "none"

    def screen(self, table: VoteTable, gold: Mapping[Hashable, tuple[float, float]] | None = None) -> ScreenResult:
        rejected = gold_rejections(table, gold) if gold and self.name != "none" else {}
        kept = table.without(rejected)
        if kept.raters:
            rejected.update(self._reject(kept))
        if len(rejected) == len(table.raters) and rejected:  # BT.500: if every rater would go, none does
            rejected = {}
        return self._estimate(table.without(rejected), rejected)

    def _reject(self, table: VoteTable) -> dict[str, str]:
        return {}

    def _estimate(self, table: VoteTable, rejected: dict[str, str]) -> ScreenResult:
        n, mos, std, ci95 = mean_and_interval(table.scores)
        return ScreenResult(self.name, table.items, mos, n, std, ci95, rejected)


def mean_and_interval(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row: count, mean, sample std (ddof 1) and Student-t 95 % half-width."""
    n = np.sum(~np.isnan(scores), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.nansum(scores, axis=1)
        mos = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        squares = np.nansum((scores - mos[:, None]) ** 2, axis=1)
        std = np.where(n >= 2, np.sqrt(squares / np.maximum(n - 1, 1)), np.nan)
        t = stats.t.ppf(0.975, np.maximum(n - 1, 1))
        ci95 = np.where(n >= 2, t * std / np.sqrt(np.maximum(n, 1)), np.nan)
    return n, mos, std, ci95


def gold_rejections(table: VoteTable, gold: Mapping[Hashable, tuple[float, float]] | None) -> dict[str, str]:
    """Raters who miss more than ``MAX_GOLD_MISSES`` of the gold images they rated."""
    rows = [(i, gold[item]) for i, item in enumerate(table.items) if gold and item in gold]
    rejected = {}
    for r, rater in enumerate(table.raters):
        answered = [(table.scores[i, r], bounds) for i, bounds in rows if not np.isnan(table.scores[i, r])]
        missed = sum(not (low <= score <= high) for score, (low, high) in answered)
        if answered and missed > MAX_GOLD_MISSES * len(answered):
            rejected[rater] = f"missed {missed} of {len(answered)} gold images"
    return rejected


class BT500Screening(Screening):
    name = "bt500"

    def _reject(self, table: VoteTable) -> dict[str, str]:
        x = table.scores
        above = np.zeros(x.shape[1])
        below = np.zeros(x.shape[1])
        for row in x[np.sum(~np.isnan(x), axis=1) >= 2]:  # one rating cannot deviate (most projects)
            seen = ~np.isnan(row)
            values = row[seen]
            if np.ptp(values) == 0:
                continue
            mu, sigma = values.mean(), values.std()
            kurtosis = stats.kurtosis(values, fisher=False)
            width = 2.0 if 2 <= kurtosis <= 4 else np.sqrt(20.0)
            above[seen] += values >= mu + width * sigma
            below[seen] += values <= mu - width * sigma
        counts = np.sum(~np.isnan(x), axis=0)
        rejected = {}
        for r, rater in enumerate(table.raters):
            outside = above[r] + below[r]
            if outside and outside / counts[r] > 0.05 and abs(above[r] - below[r]) / outside < 0.3:
                rejected[rater] = (f"BT.500: {int(outside)} of {counts[r]} scores beyond the others' spread, "
                                   f"{int(above[r])} above / {int(below[r])} below")
        return rejected


class ZScoreScreening(Screening):
    name = "zscore"

    def __init__(self, threshold: float = 1.0, min_items: int = 5) -> None:
        self.threshold = threshold
        self.min_items = min_items

    def check_params(self) -> None:
        check_int("zscore.min_items", self.min_items, 2)

    def _reject(self, table: VoteTable) -> dict[str, str]:
        self.check_params()
        x = table.scores
        mean = np.nanmean(x, axis=0)
        spread = np.nanstd(x, axis=0, ddof=1) if x.shape[0] > 1 else np.full(x.shape[1], np.nan)
        rejected = {}
        counts = np.sum(~np.isnan(x), axis=0)
        flat = (counts >= self.min_items) & (spread == 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (x - mean) / np.where(spread > 0, spread, np.nan)
        for r, rater in enumerate(table.raters):
            if flat[r]:
                rejected[rater] = f"the same score for all {counts[r]} images"
                continue
            others = np.delete(z, r, axis=1)
            shared = ~np.isnan(z[:, r]) & np.any(~np.isnan(others), axis=1)
            if shared.sum() < self.min_items:
                continue
            difference = z[shared, r] - np.nanmean(others[shared], axis=1)
            rms = float(np.sqrt(np.mean(difference**2)))
            if rms > self.threshold:
                rejected[rater] = (f"z-score: {rms:.2f} from the others (limit {self.threshold:g}) "
                                   f"on {shared.sum()} images")
        return rejected


class SubjectModelScreening(Screening):
    name = "mle"

    def __init__(self, max_ratio: float = 2.0) -> None:
        self.max_ratio = max_ratio

    def _reject(self, table: VoteTable) -> dict[str, str]:
        _, fitted = _fittable(table)
        if len(fitted.raters) < 3:
            return {}
        v = fit_subject_model(fitted.scores).inconsistency
        typical = float(np.median(v))
        return {rater: f"inconsistency {v[r]:.1f}, over {self.max_ratio:g} x the raters' median {typical:.1f}"
                for r, rater in enumerate(fitted.raters) if v[r] > self.max_ratio * typical}

    def _estimate(self, table: VoteTable, rejected: dict[str, str]) -> ScreenResult:
        n, mos, std, ci95 = mean_and_interval(table.scores)
        rows, fitted = _fittable(table)
        if not fitted.raters:
            return ScreenResult(self.name, table.items, mos, n, std, ci95, rejected)
        model = fit_subject_model(fitted.scores)
        mos[rows], ci95[rows] = model.quality, model.quality_ci95
        return ScreenResult(self.name, table.items, mos, n, std, ci95, rejected,
                            dict(zip(fitted.raters, map(float, model.bias), strict=True)),
                            dict(zip(fitted.raters, map(float, model.inconsistency), strict=True)))


def _fittable(table: VoteTable) -> tuple[list[int], VoteTable]:
    """The rows of the images with a rating, and the table of those images and the raters with
    one (the subject model needs both)."""
    rows = [i for i, count in enumerate(table.counts) if count > 0]
    scores = table.scores[rows]
    columns = [r for r in range(len(table.raters)) if np.any(~np.isnan(scores[:, r]))]
    return rows, VoteTable([table.items[i] for i in rows], [table.raters[r] for r in columns], scores[:, columns])
