"""Cluster-conditioned ridge (as in the CENIQA design): a shared model plus one per image cluster."""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from sklearn.utils.validation import check_is_fitted, validate_data

from ..config import DEFAULTS
from ..errors import ConfigError
from ..features.standardise import Standardiser
from ..registry import check_int
from .base import Images
from .knn import KNNPredictor
from .ridge import PRIOR_WEIGHT, RidgePredictor
from .ridge_solvers import best_alpha


class ClusterRidgePredictor(RidgePredictor):
    """Ridge on ``[x, g_1(x) x, ..., g_K(x) x]``, ``g`` the posteriors of a Gaussian mixture over
    the labelled images (PCA of the standardised features): a model shared by all images plus a
    correction per cluster, weighted by how surely an image belongs to it, with one penalty. Solved
    as kernel ridge, ``k(x, x') = <x, x'> (1 + g(x) . g(x'))``, so the K + 1 copies are never formed.
    Up to ``max_exact`` labels (the leave-one-out penalty choice needs the n x n kernel)."""

    def __init__(self, alphas: tuple[float, ...] = tuple(np.logspace(-1, 6, 36)), max_exact: int = 1000,
                 prior: str = DEFAULTS.prior, prior_mode: str = "feature", n_clusters: int = 3,
                 n_components: int = 8) -> None:
        super().__init__(alphas, max_exact, prior, prior_mode)
        self.n_clusters = n_clusters
        self.n_components = n_components

    def check_params(self) -> ClusterRidgePredictor:
        super().check_params()
        check_int("n_clusters", self.n_clusters, 1)
        check_int("n_components", self.n_components, 1)
        if self.prior_mode != "feature":
            raise ConfigError("cluster_ridge supports prior_mode=feature only")
        return self

    def fit(self, X: np.ndarray, y: np.ndarray, *, images: Images = None,
            row_ids: Sequence[Hashable] | None = None, normal_matrix: Any = None) -> ClusterRidgePredictor:
        self.check_params()
        X, y = validate_data(self, X, y, y_numeric=True)
        y = y.astype(float)
        if len(y) > self.max_exact:
            raise ConfigError(f"cluster_ridge fits up to max_exact={self.max_exact} labels, got {len(y)}")
        self.n_labels_, self.label_mean_, self.y_range_ = len(y), float(y.mean()), float(np.ptp(y))
        self.prior_scale_, self.prior_offset_ = 0.0, 0.0
        X, prior = self._with_prior(X)
        weights = None if prior is None else {X.shape[1] - 1: PRIOR_WEIGHT}
        self.neighbours_ = KNNPredictor().fit(X, y, scaler=Standardiser(weights=weights))
        self.scaler_ = self.neighbours_.scaler_
        self.Xs_ = self.neighbours_.Xs_.astype(np.float64)
        k = min(int(self.n_clusters), len(y))
        self.pca_ = PCA(min(int(self.n_components), len(y) - 1, X.shape[1]), random_state=0).fit(self.Xs_)
        self.mixture_ = GaussianMixture(k, covariance_type="diag", reg_covar=1e-3, random_state=0)
        self.gamma_ = self.mixture_.fit(self.pca_.transform(self.Xs_)).predict_proba(self.pca_.transform(self.Xs_))
        self.y_mean_ = float(y.mean())
        yc = y - self.y_mean_
        eig, U = np.linalg.eigh((self.Xs_ @ self.Xs_.T) * (1.0 + self.gamma_ @ self.gamma_.T))
        eig = np.clip(eig, 0.0, None)
        Uy = U.T @ yc
        self.alpha_ = best_alpha(U, eig, Uy, yc, np.asarray(self.alphas, dtype=float).ravel())
        self.dual_ = U @ (Uy / (eig + self.alpha_))
        self.coef_ = self.dual_  # marks the fit for check_is_fitted
        return self

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self, "dual_")
        X, _ = self._with_prior(validate_data(self, X, reset=False))
        Xt = self.scaler_.transform(X).astype(np.float64)
        gamma = self.mixture_.predict_proba(self.pca_.transform(Xt))
        kernel = (Xt @ self.Xs_.T) * (1.0 + gamma @ self.gamma_.T)
        return kernel @ self.dual_ + self.y_mean_, X
