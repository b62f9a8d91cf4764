"""k-nearest-neighbour MOS regression: the original design's predictor, and ridge's confidence."""
from __future__ import annotations

import copy
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..config import DEFAULTS
from ..errors import ConfigError
from ..features.standardise import Standardiser
from ..registry import check_int
from .base import Images

WEIGHTS = ("uniform", "distance")
#: Labelled images sampled to measure the typical spacing of the labels (KNN confidence).
SCALE_QUERIES = 128


class KNNPredictor(RegressorMixin, BaseEstimator):
    """k-nearest-neighbour regression on standardised features.

    With a handful of labels a non-parametric average of the most similar rated images is hard to
    beat and cannot overfit; k is capped at the number of labels so it works from one label on.
    """

    warm_state_ = None

    def __init__(self, n_neighbors: int = DEFAULTS.knn_k, weights: str = DEFAULTS.knn_weights) -> None:
        self.n_neighbors = n_neighbors
        self.weights = weights

    def check_params(self) -> KNNPredictor:
        check_int("n_neighbors", self.n_neighbors, 1)
        if self.weights not in WEIGHTS:
            raise ConfigError(f"weights must be one of {', '.join(WEIGHTS)}, got {self.weights!r}")
        return self

    def fit(self, X: np.ndarray, y: np.ndarray, *, images: Images = None,
            row_ids: Sequence[Hashable] | None = None, warm_state: Any = None,
            sample_weight: np.ndarray | None = None, scaler: Standardiser | None = None) -> KNNPredictor:
        """Only ``X`` and ``y`` matter here; the other keywords are the common interface's, except
        ``scaler``: an unfitted Standardiser to fit here instead of the plain one (ridge weights
        a column)."""
        X, y = validate_data(self, X, y, y_numeric=True)
        scaler = Standardiser() if scaler is None else scaler
        return self.fit_standardised(scaler.fit_transform(X), y, scaler)

    def fit_standardised(self, Xs: np.ndarray, y: np.ndarray, scaler: Standardiser) -> KNNPredictor:
        """The fit on rows ``Xs`` that ``scaler``, fitted on them, has standardised already (ridge
        standardises its own rows once, for both)."""
        self.check_params()
        self.n_features_in_ = Xs.shape[1]
        self.y_ = np.asarray(y, dtype=float)
        self.n_labels_ = len(y)
        self.scaler_, self.Xs_ = scaler, Xs
        self.sq_norms_ = np.einsum("ij,ij->i", self.Xs_, self.Xs_, dtype=np.float64)
        self.k_ = min(int(self.n_neighbors), self.n_labels_)
        self.y_range_ = float(np.ptp(self.y_))
        self.neighbor_scale_ = self._neighbor_scale()
        return self

    def with_rows(self, Xs: np.ndarray, sq_norms: np.ndarray, y: np.ndarray) -> KNNPredictor:
        """A copy on other standardised rows ``Xs`` (in this scaler's standardisation, with their
        squared norms) and labels ``y``; the labels' typical spacing is kept as measured here."""
        model = copy.copy(self)
        model.Xs_, model.sq_norms_, model.y_ = Xs, sq_norms, np.asarray(y, dtype=float)
        model.n_labels_ = len(y)
        model.k_ = min(int(self.n_neighbors), model.n_labels_)
        model.y_range_ = float(np.ptp(model.y_))
        return model

    def kneighbors(self, Xs: np.ndarray, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Distances and indices of the ``k`` (default ``k_``) labelled images nearest to the
        standardised rows ``Xs``, nearest first.

        One float32 matrix product per 1,024 queries: scikit-learn's parallel search has a fixed
        cost per call that dominated /predict with few labels (docs/performance.md). float32
        rounding does not reorder real neighbours; a squared distance within rounding of 0 counts
        as an exact match.
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
        no more, and all of them would cost O(n^2) distances.
        """
        if self.n_labels_ < 2:
            return 0.0
        k = min(self.k_, self.n_labels_ - 1)
        rows = np.random.default_rng(0).permutation(self.n_labels_)[:SCALE_QUERIES]
        distances, _ = self.kneighbors(self.Xs_[rows], k + 1)
        # Column 0 is the query itself (or an identical image: distance 0 either way).
        return float(np.median(distances[:, 1:].mean(axis=1)))

    def predict(self, X: np.ndarray, *, images: Images = None) -> np.ndarray:
        return self.predict_with_confidence(X)[0]

    def predict_with_confidence(self, X: np.ndarray, *, images: Images = None) -> tuple[np.ndarray, np.ndarray]:
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
