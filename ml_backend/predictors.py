"""MOS regressors on image feature vectors, plus a confidence that says which image to label next.

Predictors follow scikit-learn conventions; ``create_predictor`` builds one from user-supplied
parameters (project JSON or env vars), so its errors name the offending parameter.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import numpy as np
from scipy import linalg
from scipy.linalg import blas
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.neighbors import KNeighborsRegressor
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from ml_backend.registry import Registry

PREDICTORS: Registry[BaseEstimator] = Registry("predictor")

WEIGHTS = ("uniform", "distance")
#: Labelled images sampled to measure the typical spacing of the labels (KNN confidence).
SCALE_QUERIES = 256


def check_int(name: str, value: object, minimum: int) -> int:
    """A whole-number parameter (not a bool) of at least ``minimum``; one-line error naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@PREDICTORS.register("knn")
class KNNPredictor(RegressorMixin, BaseEstimator):
    """k-nearest-neighbour regression on standardised features.

    With a handful of labels a non-parametric average of the most similar rated images is hard to
    beat and cannot overfit; k is capped at the number of labels so it works from one label on.
    """

    def __init__(self, n_neighbors: int = 5, weights: str = "distance") -> None:
        self.n_neighbors = n_neighbors
        self.weights = weights

    def fit(self, X: np.ndarray, y: np.ndarray) -> "KNNPredictor":
        k = self.n_neighbors
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"n_neighbors must be a positive integer, got {k!r}")
        if self.weights not in WEIGHTS:
            raise ValueError(f"weights must be one of {', '.join(WEIGHTS)}, got {self.weights!r}")
        X, y = validate_data(self, X, y, y_numeric=True)
        self.y_ = y.astype(float)
        self.n_labels_ = len(y)
        self.scaler_ = StandardScaler().fit(X)
        self.knn_ = KNeighborsRegressor(min(int(k), self.n_labels_), weights=self.weights)
        Xs = self.scaler_.transform(X)
        self.knn_.fit(Xs, self.y_)
        self.y_range_ = float(np.ptp(self.y_))
        self.neighbor_scale_ = self._neighbor_scale(Xs)
        return self

    def _neighbor_scale(self, Xs: np.ndarray) -> float:
        """Median over labelled images of the mean distance to their k nearest *other* labels.

        Measured on a seeded sample of at most ``SCALE_QUERIES`` labelled images: a median needs
        no more, and all of them would cost O(n^2) distances (2.7 s at 5,000 labels).
        """
        if self.n_labels_ < 2:
            return 0.0
        k = min(self.knn_.n_neighbors, self.n_labels_ - 1)
        rows = np.random.default_rng(0).permutation(self.n_labels_)[:SCALE_QUERIES]
        distances, _ = self.knn_.kneighbors(Xs[rows], n_neighbors=k + 1)
        # Column 0 is the query itself (or an identical image: distance 0 either way).
        return float(np.median(distances[:, 1:].mean(axis=1)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "knn_")
        X = validate_data(self, X, reset=False)
        return self.knn_.predict(self.scaler_.transform(X))

    def predict_with_confidence(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and a confidence in [0, 1]; low confidence = worth labelling next.

        ``confidence = closeness * agreement`` where, over the query's k labelled neighbours,

        - ``closeness = 1 / (1 + d / s)``: d is the mean distance to the neighbours and s the
          typical such distance within the labelled set (``neighbor_scale_``, the median over
          labelled images of the mean distance to their k nearest other labelled images). Near 1
          when the neighbours coincide with the query, 0.5 at the typical spacing of the labels,
          towards 0 far from every label.
        - ``agreement = 1 - 2 * std / range``: std of the neighbours' labels (unweighted), range
          the spread of all labels (``y_range_``); the std of values within a range is at most
          half of it, so this is in [0, 1]. 1 when all labels are equal.

        With fewer than 2 labels there is no reference spacing or spread, so confidence is 0.
        """
        check_is_fitted(self, "knn_")
        X = validate_data(self, X, reset=False)
        Xs = self.scaler_.transform(X)
        predictions = self.knn_.predict(Xs)
        if self.n_labels_ < 2:
            return predictions, np.zeros(len(Xs))
        distances, indices = self.knn_.kneighbors(Xs)
        scale = max(self.neighbor_scale_, np.finfo(float).eps)
        closeness = 1.0 / (1.0 + distances.mean(axis=1) / scale)
        if self.y_range_ > 0:
            spread = self.y_[indices].std(axis=1)
            agreement = np.clip(1.0 - 2.0 * spread / self.y_range_, 0.0, 1.0)
        else:
            agreement = np.ones(len(Xs))
        return predictions, closeness * agreement


@PREDICTORS.register("ridge")
class RidgePredictor(RegressorMixin, BaseEstimator):
    """Ridge regression on standardised features, its penalty chosen by leave-one-out error.

    With tens to hundreds of labels and thousands of feature dimensions, a linear model with a
    well-chosen penalty generalises much better than nearest neighbours (every dimension
    contributes a little, instead of a distance dominated by irrelevant ones). The leave-one-out
    error of every candidate penalty comes in closed form from one eigendecomposition of the
    labels' Gram matrix (n x n: cheap while n is small). Beyond ``max_exact`` labels the penalty
    is chosen the same way on a seeded sample of ``max_exact`` of them (the best penalty depends
    on noise and signal strength, not on n) and the model is solved on all labels by Cholesky,
    so a fit at 5,000 labels takes about 2 s on 2 cores instead of 29 s.
    """

    def __init__(self, alphas: tuple[float, ...] = tuple(np.logspace(-1, 6, 36)), max_exact: int = 1000) -> None:
        self.alphas = alphas
        self.max_exact = max_exact

    def fit(self, X: np.ndarray, y: np.ndarray) -> "RidgePredictor":
        alphas = np.asarray(self.alphas, dtype=float).ravel()
        if alphas.size == 0 or np.any(alphas <= 0):
            raise ValueError(f"alphas must be positive numbers, got {self.alphas!r}")
        check_int("max_exact", self.max_exact, 3)
        X, y = validate_data(self, X, y, y_numeric=True)
        y = y.astype(float)
        self.n_labels_ = len(y)
        self.neighbours_ = KNNPredictor().fit(X, y)  # for the confidence only
        self.scaler_ = self.neighbours_.scaler_  # the same standardisation: computed once
        Xs = self.scaler_.transform(X)
        self.y_mean_ = float(y.mean())
        yc = y - self.y_mean_
        if self.n_labels_ <= self.max_exact:
            U, eig = _gram_eigen(Xs)
            Uy = U.T @ yc
            self.alpha_ = _best_alpha(U, eig, Uy, yc, alphas)
            self.coef_ = Xs.T.astype(float) @ (U @ (Uy / (eig + self.alpha_)))  # primal from dual
        else:
            rows = np.sort(np.random.default_rng(0).permutation(self.n_labels_)[: self.max_exact])
            sample = Xs[rows] - Xs[rows].mean(axis=0)
            U, eig = _gram_eigen(sample)
            ys = yc[rows] - yc[rows].mean()
            self.alpha_ = _best_alpha(U, eig, U.T @ ys, ys, alphas)
            self.coef_ = _ridge_solve(Xs, yc, self.alpha_)
        self.y_range_ = float(np.ptp(y))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False)
        return self.scaler_.transform(X) @ self.coef_ + self.y_mean_

    def predict_with_confidence(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and a confidence in [0, 1]; low = worth labelling next.

        ``confidence = (neighbours + decisiveness) / 2``, both measured on the evaluation data:
        ``neighbours`` is the KNN confidence (close to labelled images whose ratings agree), and
        ``decisiveness = |prediction - mean label| / (label range / 2)``, clipped to 1, because
        ridge pulls the images it knows least about towards the mean rating. Each alone ranked
        the errors a little (SRCC with |error| about -0.05 to -0.1 on clive-dev); together
        slightly better. It is a weak signal: see the README's results.
        """
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False)
        predictions = self.scaler_.transform(X) @ self.coef_ + self.y_mean_
        _, neighbours = self.neighbours_.predict_with_confidence(X)
        half_range = self.y_range_ / 2
        decisiveness = (
            np.clip(np.abs(predictions - self.y_mean_) / half_range, 0.0, 1.0)
            if half_range > 0 else np.zeros(len(predictions))
        )
        return predictions, (neighbours + decisiveness) / 2


def _gram_eigen(Xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvectors and eigenvalues of ``Xs Xs^T`` (float64): the left singular vectors and squared
    singular values of ``Xs``, at O(n^2 d + n^3) instead of an SVD's O(n d^2)."""
    A = Xs.astype(float, copy=False)
    eig, U = np.linalg.eigh(A @ A.T)
    return U, np.clip(eig, 0.0, None)


def _best_alpha(U: np.ndarray, eig: np.ndarray, Uy: np.ndarray, yc: np.ndarray, alphas: np.ndarray) -> float:
    """The penalty with the smallest mean squared leave-one-out residual, ``r_i / (1 - H_ii)``
    with H the hat matrix of ridge plus intercept (``yc`` is centred, ``Uy = U^T yc``)."""
    n = len(yc)
    if n < 3:
        return float(alphas[0])
    errors = []
    for alpha in alphas:
        filt = eig / (eig + alpha)
        leverage = (U**2) @ filt + 1.0 / n
        residual = (yc - U @ (filt * Uy)) / np.maximum(1.0 - leverage, 1e-12)
        errors.append(np.mean(residual**2))
    return float(alphas[int(np.argmin(errors))])


def _ridge_solve(Xs: np.ndarray, yc: np.ndarray, alpha: float) -> np.ndarray:
    """Ridge coefficients for a fixed penalty by Cholesky on the smaller of ``Xs^T Xs`` (primal) and
    ``Xs Xs^T`` (dual). float32 first (twice as fast); float64 if float32 fails or is inaccurate
    (a tiny penalty on nearly collinear features)."""
    n, d = Xs.shape
    dual = n <= d
    for dtype, syrk in ((np.float32, blas.ssyrk), (np.float64, blas.dsyrk)):
        At = np.asfortranarray(Xs.T, dtype=dtype)  # d x n, the layout BLAS reads without a copy
        target = yc.astype(dtype)
        gram = syrk(1.0, At, trans=1 if dual else 0, lower=1)  # Xs Xs^T or Xs^T Xs
        gram[np.diag_indices_from(gram)] += alpha
        rhs = target if dual else At @ target
        try:
            solution = linalg.cho_solve(linalg.cho_factor(gram, lower=True, overwrite_a=True, check_finite=False),
                                        rhs, check_finite=False)
        except np.linalg.LinAlgError:
            if dtype is np.float64:
                raise ValueError(f"ridge penalty {alpha:g} is too small to solve for these features") from None
            continue
        product = At.T @ (At @ solution) if dual else At @ (At.T @ solution)
        residual = product + alpha * solution - rhs
        if np.linalg.norm(residual) <= 1e-3 * np.linalg.norm(rhs):
            break
    return (At @ solution if dual else solution).astype(float)


def create_predictor(name: str, params: Mapping[str, Any] | None = None) -> BaseEstimator:
    """Build a registered predictor from user-supplied parameters.

    Unknown names raise ValueError listing the accepted ones; values are converted to the type of
    the parameter's default ("7" -> 7), so strings from env vars and JSON both work. Value ranges
    are checked by ``fit``.
    """
    factory = PREDICTORS.get(name)
    defaults = {p.name: p.default for p in inspect.signature(factory).parameters.values()}
    converted = {}
    for key, value in (params or {}).items():
        if key not in defaults:
            raise ValueError(
                f"unknown parameter '{key}' for predictor '{name}'; "
                f"allowed: {', '.join(sorted(defaults))}"
            )
        converted[key] = _convert(f"{name}.{key}", value, defaults[key])
    return factory(**converted)


def _to_int(value: Any) -> int:
    """Whole numbers only: "7", 7 and 7.0 pass; "7.5", 7.5 and True do not."""
    if isinstance(value, bool):
        raise ValueError("a bool is not an integer")
    number = float(value.strip() if isinstance(value, str) else value)
    if not number.is_integer():
        raise ValueError("not a whole number")
    return int(number)


#: Converters by the type of a parameter's default; parameters with other defaults pass as-is.
_CONVERTERS: dict[type, Callable[[Any], Any]] = {int: _to_int, float: float, str: str.strip}


def _convert(label: str, value: Any, default: Any) -> Any:
    """Coerce ``value`` to the type of ``default``, with an error naming the parameter."""
    converter = _CONVERTERS.get(type(default))
    if converter is None:
        return value
    try:
        return converter(value)
    except (TypeError, ValueError):
        expected = type(default).__name__
        raise ValueError(f"parameter {label}={value!r} is not a valid {expected}") from None


from . import similarity  # noqa: E402,F401  (registers "similarity"; imports PREDICTORS from here)
