"""How much each image's MOS should count in the model: by how sure it is.

A MOS of n ratings scatters around the image's true quality by ``v = s^2 / n`` (``s^2``: the
variance of one rating, pooled over the images with several; for the subject model, its own
interval). The model also misses the true quality by some ``tau^2`` of its own, so the error of a
label against what the model can learn is ``tau^2 + v``; its weight is the inverse, scaled so that
one rating counts 1: ``(tau^2 + s^2) / (tau^2 + v)``. When ``tau^2`` dominates (a model far from
the raters' precision), extra raters hardly change a weight; when it is small the weight
approaches n, the "ratings over variance" of the textbook.
"""
from __future__ import annotations

import numpy as np


def pooled_variance(n: np.ndarray, std: np.ndarray) -> float | None:
    """One rating's variance pooled over the images with at least two (``sum (n-1) s^2 / sum
    (n-1)``); None when no image has two."""
    several = (n >= 2) & np.isfinite(std)
    if not several.any():
        return None
    return float(np.sum((n[several] - 1) * std[several] ** 2) / np.sum(n[several] - 1))


def label_weights(n: np.ndarray, variance: np.ndarray, residual: np.ndarray | None) -> np.ndarray | None:
    """``mos_weights`` for labels of ``n`` ratings whose MOS have these variances, one rating's
    variance taken as the median of ``variance * n``; None (all equal) while every image has one."""
    if np.all(n == 1):
        return None
    return mos_weights(variance, float(np.median(variance * n)), residual)


def mos_weights(variance: np.ndarray, single: float, residual: np.ndarray | None) -> np.ndarray:
    """Weights from each MOS's variance, the variance ``single`` of one rating, and the model's
    leave-one-out residuals fitted without weights (None: treat the model as exact, weight =
    single / variance)."""
    tau2 = 0.0 if residual is None else max(0.0, float(np.mean(residual**2) - np.mean(variance)))
    return (tau2 + single) / (tau2 + np.maximum(variance, 1e-12))
