"""MOS regressors on image feature vectors, plus a confidence that says which image to label next.

Predictors follow scikit-learn conventions; ``create_predictor`` builds one from user-supplied
parameters (project JSON or env vars), so its errors name the offending parameter.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Hashable, Mapping, Sequence

import numpy as np
from scipy import linalg
from scipy.linalg import blas
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ml_backend.registry import Registry
from ml_backend.standardise import Standardiser

PREDICTORS: Registry[BaseEstimator] = Registry("predictor")

WEIGHTS = ("uniform", "distance")
#: Labelled images sampled to measure the typical spacing of the labels (KNN confidence).
SCALE_QUERIES = 128


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
        self.scaler_ = Standardiser()
        self.Xs_ = self.scaler_.fit_transform(X)
        self.sq_norms_ = np.einsum("ij,ij->i", self.Xs_, self.Xs_, dtype=np.float64)
        self.k_ = min(int(k), self.n_labels_)
        self.y_range_ = float(np.ptp(self.y_))
        self.neighbor_scale_ = self._neighbor_scale()
        return self

    def kneighbors(self, Xs: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Distances and indices of the ``k`` (default ``k_``) labelled images nearest to the
        standardised rows ``Xs``, nearest first.

        One float32 matrix product per 1,024 queries: scikit-learn's parallel search cost 15 ms
        per call even with 50 labels, a third of the /predict budget. Its rounding (~0.02 on
        distances of ~80) does not reorder real neighbours; a squared distance within rounding
        of 0 counts as an exact match.
        """
        k = self.k_ if k is None else k
        distances, indices = [], []
        for start in range(0, len(Xs), 1024):
            query = Xs[start : start + 1024]
            norms = np.einsum("ij,ij->i", query, query, dtype=np.float64)[:, None] + self.sq_norms_
            d2 = norms - 2.0 * (query @ self.Xs_.T)
            d2[d2 <= 1e-6 * norms] = 0.0
            nearest = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < d2.shape[1] else np.tile(
                np.arange(d2.shape[1]), (len(d2), 1))
            part = np.take_along_axis(d2, nearest, axis=1)
            order = np.argsort(part, axis=1, kind="stable")
            distances.append(np.sqrt(np.take_along_axis(part, order, axis=1)))
            indices.append(np.take_along_axis(nearest, order, axis=1))
        return np.vstack(distances), np.vstack(indices)

    def _average(self, distances: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """Neighbours' mean label, weighted by 1 / distance for ``weights="distance"`` (an exact
        match takes all the weight), as scikit-learn's KNeighborsRegressor does."""
        if self.weights == "uniform":
            return self.y_[indices].mean(axis=1)
        exact = distances == 0
        with np.errstate(divide="ignore"):
            w = np.where(exact.any(axis=1, keepdims=True), exact.astype(float), 1.0 / distances)
        return (w * self.y_[indices]).sum(axis=1) / w.sum(axis=1)

    def _neighbor_scale(self) -> float:
        """Median over labelled images of the mean distance to their k nearest *other* labels.

        Measured on a seeded sample of at most ``SCALE_QUERIES`` labelled images: a median needs
        no more, and all of them would cost O(n^2) distances (2.7 s at 5,000 labels; 128: 0.1 s).
        """
        if self.n_labels_ < 2:
            return 0.0
        k = min(self.k_, self.n_labels_ - 1)
        rows = np.random.default_rng(0).permutation(self.n_labels_)[:SCALE_QUERIES]
        distances, _ = self.kneighbors(self.Xs_[rows], k + 1)
        # Column 0 is the query itself (or an identical image: distance 0 either way).
        return float(np.median(distances[:, 1:].mean(axis=1)))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.predict_with_confidence(X)[0]

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
        check_is_fitted(self, "Xs_")
        X = validate_data(self, X, reset=False)
        distances, indices = self.kneighbors(self.scaler_.transform(X))
        predictions = self._average(distances, indices)
        if self.n_labels_ < 2:
            return predictions, np.zeros(len(X))
        scale = max(self.neighbor_scale_, np.finfo(float).eps)
        closeness = 1.0 / (1.0 + distances.mean(axis=1) / scale)
        if self.y_range_ > 0:
            spread = self.y_[indices].std(axis=1)
            agreement = np.clip(1.0 - 2.0 * spread / self.y_range_, 0.0, 1.0)
        else:
            agreement = np.ones(len(X))
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
    on noise and signal strength, not on n) and the model is solved on all labels by Cholesky.
    With more labels than feature dimensions that solve needs the d x d normal matrix; a fit
    given the ``previous`` fit updates that matrix with the rows that changed instead of
    recomputing it, which is what keeps a retrain after one more label under a second.
    """

    #: The backend passes ``row_ids`` and the ``previous`` fit of the same project to ``fit``.
    accepts_previous_fit = True

    def __init__(self, alphas: tuple[float, ...] = tuple(np.logspace(-1, 6, 36)), max_exact: int = 1000) -> None:
        self.alphas = alphas
        self.max_exact = max_exact

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        row_ids: Sequence[Hashable] | None = None,
        previous: "RidgePredictor | None" = None,
    ) -> "RidgePredictor":
        """``row_ids`` name the rows (task ids; default: their positions) so that ``previous``, a
        fitted ridge of earlier rows, lends its normal matrix: it keeps predicting as before but
        cannot lend it again. This fit keeps a reference to ``X``: do not modify it afterwards."""
        alphas = np.asarray(self.alphas, dtype=float).ravel()
        if alphas.size == 0 or np.any(alphas <= 0):
            raise ValueError(f"alphas must be positive numbers, got {self.alphas!r}")
        check_int("max_exact", self.max_exact, 3)
        X, y = validate_data(self, X, y, y_numeric=True)
        y = y.astype(float)
        ids = list(range(len(y))) if row_ids is None else list(row_ids)
        if len(ids) != len(y):
            raise ValueError(f"fit got {len(y)} feature rows but {len(ids)} row_ids")
        self.n_labels_ = len(y)
        self.neighbours_ = KNNPredictor().fit(X, y)  # for the confidence only
        self.scaler_ = self.neighbours_.scaler_  # the same standardisation: computed once
        self.y_mean_ = float(y.mean())
        yc = y - self.y_mean_
        self.normal_matrix_ = None
        Xs = self.neighbours_.Xs_  # X in the shared standardisation, already computed
        if self.n_labels_ <= self.max_exact:
            U, eig = _gram_eigen(Xs)
            Uy = U.T @ yc
            self.alpha_ = _best_alpha(U, eig, Uy, yc, alphas)
            self.coef_ = Xs.T.astype(float) @ (U @ (Uy / (eig + self.alpha_)))  # primal from dual
        else:
            rows = np.sort(np.random.default_rng(0).permutation(self.n_labels_)[: self.max_exact])
            sample = Xs[rows]
            sample -= sample.mean(axis=0)
            U, eig = _gram_eigen(sample, np.float32)
            ys = yc[rows] - yc[rows].mean()
            self.alpha_ = _best_alpha(U, eig, U.T @ ys, ys, alphas)
            if self.n_labels_ <= X.shape[1]:
                self.coef_ = _dual_solve(Xs, yc, self.alpha_)
            else:
                normal = None
                if isinstance(previous, RidgePredictor):  # moved, not shared: see _NormalMatrix
                    normal, previous.normal_matrix_ = getattr(previous, "normal_matrix_", None), None
                if normal is None or not normal.update(X, ids):
                    normal = _NormalMatrix(X, ids)
                self.normal_matrix_ = normal
                rhs = (X.T @ yc.astype(X.dtype)).astype(float) / self.scaler_.scale_  # Xs^T yc
                self.coef_ = normal.solve(self.scaler_.mean_, self.scaler_.scale_, rhs, self.alpha_)
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


def _gram_eigen(Xs: np.ndarray, dtype: type[np.floating] = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvectors and eigenvalues of ``Xs Xs^T``: the left singular vectors and squared singular
    values of ``Xs``, at O(n^2 d + n^3) instead of an SVD's O(n d^2). The product is formed in
    ``dtype`` (float32 is enough to choose a penalty, at half the time), decomposed in float64."""
    A = Xs.astype(dtype, copy=False)
    eig, U = np.linalg.eigh((A @ A.T).astype(float))
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


def _dual_solve(Xs: np.ndarray, yc: np.ndarray, alpha: float) -> np.ndarray:
    """Ridge coefficients for a fixed penalty from ``(Xs Xs^T + alpha I) a = yc`` (n <= d), by
    Cholesky: float32 first (twice as fast), float64 if float32 fails or is inaccurate (a tiny
    penalty on nearly collinear features)."""
    for dtype, syrk in ((np.float32, blas.ssyrk), (np.float64, blas.dsyrk)):
        At = np.asfortranarray(Xs.T, dtype=dtype)  # d x n, the layout BLAS reads without a copy
        target = yc.astype(dtype)
        gram = syrk(1.0, At, trans=1, lower=1)  # Xs Xs^T, lower triangle
        gram[np.diag_indices_from(gram)] += alpha
        try:
            solution = linalg.cho_solve(linalg.cho_factor(gram, lower=True, overwrite_a=True, check_finite=False),
                                        target, check_finite=False)
        except np.linalg.LinAlgError:
            if dtype is np.float64:
                raise ValueError(f"ridge penalty {alpha:g} is too small to solve for these features") from None
            continue
        residual = At.T @ (At @ solution) + alpha * solution - target
        if np.linalg.norm(residual) <= 1e-3 * np.linalg.norm(target):
            break
    return (At @ solution).astype(float)


class _NormalMatrix:
    """``sum over rows of (x - center)(x - center)^T`` (d x d, float64) and the rows it sums.

    Kept by a ridge fit with more labels than dimensions, so that the next fit adds and removes
    only the rows that changed: O(d^2) per changed row instead of O(n d^2) (0.4 s of float32
    BLAS at 5,000 x 3,904). Rows are matched by id *and* content, so an id whose features
    changed (a replaced image) is swapped out, not kept stale. ``center`` is the mean of the rows
    it was first computed from: summing about a point near the mean keeps float32 accurate.

    Updates and solves work in place, in buffers that move from fit to fit: a fresh 120 MB
    array costs 60-400 ms of page faults on the machines measured, more than the arithmetic.
    """

    #: Beyond this fraction of changed rows, recomputing is cheaper than updating.
    MAX_CHANGED = 0.25
    #: Rows per block when comparing or transforming, to keep temporaries small.
    BLOCK = 256

    def __init__(self, X: np.ndarray, ids: list[Hashable]) -> None:
        self.ids = list(ids)
        self.rows = X
        self.center = X.mean(axis=0, dtype=np.float64)
        lower = blas.ssyrk(1.0, np.asfortranarray((X - self.center).T, dtype=np.float32), trans=0, lower=1)
        self.gram = np.ascontiguousarray(lower, dtype=float)  # C order: see update
        self.gram += np.tril(self.gram, -1).T  # BLAS filled the lower triangle only
        self._factor = np.empty(self.gram.shape, dtype=np.float32)

    def update(self, X: np.ndarray, ids: list[Hashable]) -> bool:
        """Replace the rows by ``X`` in place; False (nothing changed) when too many rows differ."""
        if self.rows.shape[1] != X.shape[1]:
            return False
        position = {row_id: i for i, row_id in enumerate(self.ids)}
        pairs = np.array([(j, position[row_id]) for j, row_id in enumerate(ids) if row_id in position],
                         dtype=int).reshape(-1, 2)
        same = np.concatenate([np.all(X[block[:, 0]] == self.rows[block[:, 1]], axis=1)
                               for block in np.array_split(pairs, max(1, len(pairs) // self.BLOCK))])
        added = np.setdiff1d(np.arange(len(X)), pairs[same, 0])
        removed = np.setdiff1d(np.arange(len(self.rows)), pairs[same, 1])
        if len(added) + len(removed) > self.MAX_CHANGED * len(X):
            return False
        # The gram is symmetric, so its transpose (Fortran order, as BLAS needs to write in
        # place: a C-order ``c`` would be copied and the update lost) is the same matrix.
        for rows, sign in ((X[added], 1.0), (self.rows[removed], -1.0)):
            if len(rows):
                delta = rows - self.center
                blas.dgemm(sign, delta, delta, trans_a=True, beta=1.0, c=self.gram.T, overwrite_c=True)
        self.ids, self.rows = list(ids), X
        return True

    def solve(self, mean: np.ndarray, scale: np.ndarray, rhs: np.ndarray, alpha: float) -> np.ndarray:
        """``(Xs^T Xs + alpha I)^-1 rhs`` for ``Xs = (X - mean) / scale`` by Cholesky: float32
        first (twice as fast), float64 if float32 fails or is inaccurate."""
        n = len(self.rows)
        shift = mean - self.center

        def standardised(out: np.ndarray) -> np.ndarray:
            for start in range(0, len(out), self.BLOCK):
                part = slice(start, start + self.BLOCK)
                block = self.gram[part] - n * np.outer(shift[part], shift)
                block /= np.outer(scale[part], scale)
                out[part] = block
            out[np.diag_indices_from(out)] += alpha
            return out

        def residual(w: np.ndarray) -> float:
            v = w / scale
            product = (self.gram @ v - n * shift * (shift @ v)) / scale
            return float(np.linalg.norm(product + alpha * w - rhs))

        for factor in (lambda: standardised(self._factor), lambda: standardised(np.empty_like(self.gram))):
            matrix = factor()
            try:  # the transpose is the same symmetric matrix in the Fortran order LAPACK overwrites
                cholesky = linalg.cho_factor(matrix.T, lower=True, overwrite_a=True, check_finite=False)
            except np.linalg.LinAlgError:
                continue
            solution = linalg.cho_solve(cholesky, rhs.astype(matrix.dtype), check_finite=False).astype(float)
            if residual(solution) <= 1e-3 * np.linalg.norm(rhs):
                return solution
        raise ValueError(f"ridge penalty {alpha:g} is too small to solve for these features")


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
