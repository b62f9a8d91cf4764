"""How agreement grows with the number of ratings, and what more ratings would add.

On random subsets of the rated images of each size, the predictor's leave-one-out SRCC (each
rating predicted by the model fitted without it); a saturating curve ``a - b n^-c`` fitted to
those points says how many more ratings would gain a given amount, or that the curve is flat.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import curve_fit

from ..prediction.base import Predictor
from ..prediction.ridge import RidgePredictor
from .metrics import plcc_raw, srcc


@dataclass(frozen=True)
class LearningCurve:
    sizes: list[int]
    srcc_mean: list[float]
    srcc_std: list[float]
    #: The fitted curve's parameters (a, b, c), None when it could not be fitted.
    fit: tuple[float, float, float] | None

    def more_for(self, gain: float) -> int | None:
        """Ratings to add to the largest size for ``gain`` more SRCC by the fitted curve; None when
        the curve's plateau is below that (more ratings add less)."""
        if self.fit is None:
            return None
        a, b, c = self.fit
        target = _curve(self.sizes[-1], a, b, c) + gain
        if target >= a:
            return None
        return max(1, int(np.ceil((b / (a - target)) ** (1 / c))) - self.sizes[-1])


def held_out_quality(predictor: Predictor, targets: np.ndarray) -> dict[str, Any] | None:
    """How well a fitted model predicts each rating it was not given (leave-one-out, closed form
    for ridge): SRCC, PLCC and RMSE against the people's MOS, the "is it good enough yet?" number.
    None for predictors without it, fewer than 5 ratings, or constant values."""
    residuals = getattr(predictor, "loo_residuals_", None)
    if residuals is None or len(residuals) < 5:
        return None
    truth = np.asarray(targets, dtype=float)[predictor.loo_rows_]  # type: ignore[attr-defined]
    held_out = truth - residuals
    if np.ptp(truth) == 0 or np.ptp(held_out) == 0:
        return None
    return {"n": int(len(truth)), "srcc": round(srcc(held_out, truth), 4),
            "plcc": round(plcc_raw(held_out, truth), 4),
            "rmse": round(float(np.sqrt(np.mean(residuals**2))), 3)}


def _curve(n: float, a: float, b: float, c: float) -> float:
    return a - b * np.power(n, -c)


def learning_curve(X: np.ndarray, y: np.ndarray, repeats: int = 5, points: int = 6, seed: int = 0,
                   prior: str = "auto") -> LearningCurve:
    """Leave-one-out SRCC of ridge on ``repeats`` random subsets at ``points`` sizes from 10 to all."""
    n = len(y)
    sizes = sorted({int(round(s)) for s in np.geomspace(min(10, n), n, points)})
    rng = np.random.default_rng(seed)
    means, stds = [], []
    for size in sizes:
        scores = []
        for _ in range(1 if size == n else repeats):
            rows = np.sort(rng.choice(n, size, replace=False))
            quality = held_out_quality(RidgePredictor(prior=prior).fit(X[rows], y[rows]), y[rows])
            if quality is not None:
                scores.append(quality["srcc"])
        means.append(float(np.mean(scores)) if scores else float("nan"))
        stds.append(float(np.std(scores)) if scores else float("nan"))
    fit = None
    usable = [(s, m) for s, m in zip(sizes, means, strict=True) if np.isfinite(m)]
    if len(usable) >= 4:
        try:
            params, _ = curve_fit(_curve, *map(np.array, zip(*usable, strict=True)), p0=(0.9, 1.0, 0.5),
                                  bounds=([-1.0, 0.0, 0.05], [1.0, 50.0, 3.0]), maxfev=5000)
            fit = (float(params[0]), float(params[1]), float(params[2]))
        except (RuntimeError, ValueError):
            fit = None
    return LearningCurve(sizes, means, stds, fit)
