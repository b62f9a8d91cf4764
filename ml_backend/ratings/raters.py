"""Per-rater statistics for the rater report: is this person's data worth keeping?"""
from __future__ import annotations

import statistics
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from .screening import ScreenResult
from .votes import Vote, VoteTable


@dataclass(frozen=True)
class RaterStats:
    rater: str
    email: str
    ratings: int  # counted ratings (latest per image)
    skipped: int
    #: SRCC of their scores with the MOS of the other raters on the same images (None below 3 images)
    srcc_others: float | None
    #: mean of (their score - the others' mean); the subject model's when ``mle`` ran
    bias: float | None
    #: spread of their scores around others' mean + bias; the subject model's when ``mle`` ran
    inconsistency: float | None
    longest_run: int  # most consecutive ratings (in time order) with the same score
    median_lead_time: float | None  # seconds
    gold_rated: int
    gold_correct: int
    rejected: bool
    reason: str


def rater_stats(table: VoteTable, votes: Iterable[Vote], result: ScreenResult,
                gold: Mapping[Hashable, tuple[float, float]] | None = None) -> list[RaterStats]:
    """One row per rater of ``table`` (the counted votes), in its order."""
    votes = list(votes)
    by_rater: dict[str, list[Vote]] = {}
    for vote in votes:
        by_rater.setdefault(vote.rater, []).append(vote)
    x = table.scores
    rows = []
    for r, rater in enumerate(table.raters):
        mine = by_rater.get(rater, [])
        own = x[:, r]
        others = np.delete(x, r, axis=1)
        shared = ~np.isnan(own) & np.any(~np.isnan(others), axis=1) if others.size else np.zeros(len(own), bool)
        srcc = bias = spread = None
        if shared.any():
            reference = np.nanmean(others[shared], axis=1)
            difference = own[shared] - reference
            bias = float(difference.mean())
            spread = float(difference.std(ddof=1)) if shared.sum() >= 2 else None
            if shared.sum() >= 3 and np.ptp(own[shared]) > 0 and np.ptp(reference) > 0:
                srcc = float(spearmanr(own[shared], reference).statistic)
        if rater in result.bias:
            bias, spread = result.bias[rater], result.inconsistency[rater]
        scored = sorted((v for v in mine if v.score is not None), key=lambda v: (v.created, v.annotation_id or 0))
        leads = [v.lead_time for v in mine if v.lead_time is not None]
        gold_answers = [(own[i], gold[item]) for i, item in enumerate(table.items)
                        if gold and item in gold and not np.isnan(own[i])]
        rows.append(RaterStats(
            rater=rater, email=next((v.email for v in mine if v.email), ""),
            ratings=int(np.sum(~np.isnan(own))), skipped=sum(v.score is None for v in mine),
            srcc_others=srcc, bias=bias, inconsistency=spread,
            longest_run=_longest_run([v.score for v in scored]),
            median_lead_time=statistics.median(leads) if leads else None,
            gold_rated=len(gold_answers),
            gold_correct=sum(low <= score <= high for score, (low, high) in gold_answers),
            rejected=rater in result.rejected, reason=result.rejected.get(rater, ""),
        ))
    return rows


def _longest_run(scores: list[float | None]) -> int:
    best = run = 0
    previous: float | None = None
    for score in scores:
        run = run + 1 if score == previous else 1
        previous = score
        best = max(best, run)
    return best
