"""The subject model of ITU-T P.910 Annex E / P.913 (Li & Bampis; Netflix ``sureal``'s
content-oblivious maximum-likelihood model): rater ``s``'s score of image ``e`` is
``psi_e + b_s + v_s * noise``, a true quality, the rater's bias and the rater's inconsistency.

Solved by the alternating updates that maximise the likelihood (each a closed form given the
others). One change from the plain maximum-likelihood estimate: each rater's variance divides the
squared residuals by the residual degrees of freedom (``sum_e 1 - h_es``, ``h_es`` the rater's
weight in image ``e``'s estimate) instead of by their count. With few raters per image the plain
estimate is degenerate: one rater's inconsistency falls to 0 and every image's quality becomes
that rater's scores (``sureal`` does this with 3 raters; tests/unit/test_ratings.py). On tables
with many raters per image both agree (the same test).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Two-sided 95 % normal quantile (the model's intervals are asymptotic).
Z95 = 1.959964


@dataclass(frozen=True)
class SubjectModel:
    quality: np.ndarray  # psi per image
    quality_ci95: np.ndarray  # half-width of its 95 % interval
    bias: np.ndarray  # b per rater (mean zero over raters)
    inconsistency: np.ndarray  # v per rater (a standard deviation, on the scale of the scores)
    iterations: int


def fit_subject_model(scores: np.ndarray, floor: float | None = None, residual_dof: bool = True,
                      tol: float = 1e-6, max_iter: int = 2000) -> SubjectModel:
    """Fit the model to an image x rater table with NaN for missing scores. ``floor``: the smallest
    inconsistency (default 1 % of the score range), so a rater who rated few images alone cannot
    take every weight. ``residual_dof=False`` is the plain maximum-likelihood estimate (sureal's)."""
    x = np.asarray(scores, dtype=float)
    seen = ~np.isnan(x)
    if not seen.any(axis=1).all() or not seen.any(axis=0).all():
        raise ValueError("every image and every rater needs at least one score")
    floor = max(float(np.ptp(x[seen])) * 0.01, 1e-6) if floor is None else floor
    x0 = np.where(seen, x, 0.0)
    psi = np.nanmean(x, axis=1)
    bias = np.zeros(x.shape[1])
    pooled = float(np.nanstd(x - psi[:, None])) or floor
    v = np.full(x.shape[1], max(pooled, floor))
    iterations = 0
    while iterations < max_iter:
        iterations += 1
        w = np.where(seen, 1.0 / v**2, 0.0)
        new_psi = np.sum(w * (x0 - bias), axis=1) / np.sum(w, axis=1)
        residual = np.where(seen, x0 - new_psi[:, None], 0.0)
        bias = residual.sum(axis=0) / seen.sum(axis=0)
        shift = bias.mean()
        bias -= shift
        new_psi += shift
        residual = np.where(seen, x0 - new_psi[:, None] - bias, 0.0)
        leverage = w / np.sum(w, axis=1, keepdims=True)
        dof = np.sum(np.where(seen, 1.0 - leverage, 0.0) if residual_dof else seen, axis=0)
        variance = np.sum(residual**2, axis=0) / np.maximum(dof, 1e-12)
        typical = float(np.median(np.sqrt(variance[dof >= 1]))) if (dof >= 1).any() else pooled
        new_v = np.maximum(np.where(dof >= 1, np.sqrt(variance), max(typical, floor)), floor)
        change = max(float(np.max(np.abs(new_psi - psi))), float(np.max(np.abs(new_v - v))))
        psi, v = new_psi, new_v
        if change < tol:
            break
    w = np.where(seen, 1.0 / v**2, 0.0)
    return SubjectModel(psi, Z95 / np.sqrt(np.sum(w, axis=1)), bias, v, iterations)
