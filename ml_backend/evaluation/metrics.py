"""Agreement between predicted and human MOS, as image-quality papers report it."""
from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit
from scipy.stats import kendalltau, pearsonr, spearmanr

from ..registry import Registry

Metric = Callable[[np.ndarray, np.ndarray], float]
METRICS: Registry[float] = Registry("metric")


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The 4-parameter logistic of VQEG/ITU-T P.1401, mapping predictions onto the MOS scale."""
    return (b1 - b2) * expit((x - b3) / (abs(b4) + 1e-12)) + b2


def fit_logistic(predicted: np.ndarray, mos: np.ndarray) -> np.ndarray:
    """``predicted`` mapped through the best-fitting logistic (identity if the fit fails)."""
    guess = [mos.max(), mos.min(), float(np.mean(predicted)), float(np.std(predicted)) or 1.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(logistic4, predicted, mos, p0=guess, maxfev=20000)
        return logistic4(predicted, *params)
    except (RuntimeError, ValueError):
        return predicted


def _finite(value: float) -> float:
    return float(value) if np.isfinite(value) else 0.0


@METRICS.register("srcc")
def srcc(predicted: np.ndarray, mos: np.ndarray) -> float:
    return _finite(spearmanr(predicted, mos)[0])


@METRICS.register("krcc")
def krcc(predicted: np.ndarray, mos: np.ndarray) -> float:
    return _finite(kendalltau(predicted, mos)[0])


@METRICS.register("plcc")
def plcc(predicted: np.ndarray, mos: np.ndarray) -> float:
    """Pearson after the logistic fit (the usual reported PLCC)."""
    return _finite(pearsonr(fit_logistic(predicted, mos), mos)[0])


@METRICS.register("plcc_raw")
def plcc_raw(predicted: np.ndarray, mos: np.ndarray) -> float:
    return _finite(pearsonr(predicted, mos)[0])


@METRICS.register("rmse")
def rmse(predicted: np.ndarray, mos: np.ndarray) -> float:
    """On the raw predictions: they are meant to be on the labelling scale already."""
    return float(np.sqrt(np.mean((np.asarray(predicted) - np.asarray(mos)) ** 2)))


#: The three quality classes of the class metrics, by the dataset's MOS terciles.
CLASSES = ("bad", "normal", "good")


def terciles(mos: np.ndarray) -> tuple[float, float]:
    """The MOS values splitting a dataset into thirds: bad / normal / good."""
    low, high = np.quantile(mos, [1 / 3, 2 / 3])
    return float(low), float(high)


def class_metrics(predicted: np.ndarray, mos: np.ndarray, thresholds: tuple[float, float]) -> dict[str, float]:
    """Macro F1 of bad / normal / good (predicted and true MOS cut at the same ``thresholds``),
    and the RMSE within each true class: MOS piles up in the middle, so a model that predicts
    the mean looks fine on the overall RMSE and fails at both ends."""
    from sklearn.metrics import f1_score

    truth, guess = np.digitize(mos, thresholds), np.digitize(predicted, thresholds)
    scores = {"f1_3class": float(f1_score(truth, guess, labels=[0, 1, 2], average="macro", zero_division=0))}
    for index, name in enumerate(CLASSES):
        members = truth == index
        scores[f"rmse_{name}"] = rmse(predicted[members], mos[members]) if members.any() else 0.0
    return scores


def all_metrics(predicted: np.ndarray, mos: np.ndarray,
                thresholds: tuple[float, float] | None = None) -> dict[str, float]:
    """Every registered metric, plus the class metrics when the dataset's ``thresholds`` are given."""
    extra = class_metrics(np.asarray(predicted), np.asarray(mos), thresholds) if thresholds else {}
    if len(mos) < 3 or np.ptp(predicted) == 0:
        # Correlations are undefined for constant predictions; report them as 0 (no agreement).
        return {**{name: (rmse(predicted, mos) if name == "rmse" else 0.0) for name in METRICS.names()}, **extra}
    return {**{name: METRICS.get(name)(predicted, mos) for name in METRICS.names()}, **extra}


def split_half_srcc(votes: dict[Any, list[float]], seed: int = 0, repeats: int = 20) -> tuple[float, int] | None:
    """Inter-rater agreement: the SRCC between the means of two random halves of each image's
    raters, over the images with at least two, averaged over ``repeats`` splits; with that number
    of images. None below 5 such images."""
    multi = [v for v in votes.values() if len(v) >= 2]
    if len(multi) < 5:
        return None
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(repeats):
        halves = []
        for values in multi:
            order = rng.permutation(len(values))
            cut = len(values) // 2
            halves.append((np.mean(np.asarray(values)[order[:cut]]), np.mean(np.asarray(values)[order[cut:]])))
        a, b = np.array(halves).T
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            scores.append(srcc(a, b))
    return (float(np.mean(scores)), len(multi)) if scores else None
