"""MOS from the most similar labelled images, by a full-reference metric (LPIPS, SSIM, MS-SSIM).

Full-reference metrics say how alike two images look, so they help when images share content
(versions of one scene); they say little across different scenes. Comparing every query with
every label costs O(N * M) metric calls, so candidates are preselected by CNN-feature nearest
neighbours and only those are compared (``n_candidates``).
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.validation import check_is_fitted, validate_data

from ...errors import ConfigError
from ...features.standardise import Standardiser
from ...registry import check_int
from ..base import Images
from .metrics import (
    LPIPS_NETS,
    MIN_SIZE,
    MS_SSIM_MIN_SIZE,
    TENSOR_CACHE,
    build_metric,
    comparison_batch,
    metric_weights,
)


class SimilarityPredictor(RegressorMixin, BaseEstimator):
    """Similarity-weighted mean MOS of the ``n_neighbors`` most similar labelled images.

    ``metric``: lpips, ssim, ms_ssim, or combined = (alpha * lpips + beta * ssim + gamma *
    ms_ssim) / (alpha + beta + gamma), every term a similarity in [0, 1]. Candidates: the
    ``n_candidates`` labelled images nearest in standardised feature space (0 = all labels).
    Images are compared at ``size`` x ``size`` (shorter side scaled to ``size``, centre crop).
    ``lpips_weights``: backbone state dict file; empty = torchvision's download.
    """

    warm_state_ = None

    def __init__(
        self,
        metric: str = "lpips",
        alpha: float = 1.0,
        beta: float = 1.0,
        gamma: float = 1.0,
        n_neighbors: int = 5,
        n_candidates: int = 20,
        size: int = 256,
        lpips_net: str = "alex",
        lpips_weights: str = "",
    ) -> None:
        self.metric = metric
        self.alpha = alpha
        self.beta = beta
        self.gamma = gamma
        self.n_neighbors = n_neighbors
        self.n_candidates = n_candidates
        self.size = size
        self.lpips_net = lpips_net
        self.lpips_weights = lpips_weights

    def check_params(self) -> SimilarityPredictor:
        """Validate the parameters (cheap, builds nothing); one-line ValueError naming the culprit."""
        weights = metric_weights(self.metric, self.alpha, self.beta, self.gamma)
        check_int("n_neighbors", self.n_neighbors, 1)
        check_int("n_candidates", self.n_candidates, 0)
        minimum = MS_SSIM_MIN_SIZE if weights["ms_ssim"] > 0 else MIN_SIZE
        check_int("size (with this metric)", self.size, minimum)
        if weights["lpips"] > 0:
            if self.lpips_net not in LPIPS_NETS:
                raise ConfigError(
                    f"lpips_net must be one of {', '.join(LPIPS_NETS)}, got {self.lpips_net!r}"
                )
            if self.lpips_weights and not Path(self.lpips_weights).is_file():
                raise ConfigError(f"lpips_weights file not found: {self.lpips_weights}")
        return self

    def fit(self, X: np.ndarray, y: np.ndarray, *, images: Images = None,
            row_ids: Sequence[Hashable] | None = None, warm_state: Any = None,
            sample_weight: np.ndarray | None = None) -> SimilarityPredictor:
        """``images`` are the files of the rows (required: this predictor compares pixels)."""
        self.check_params()
        X, y = validate_data(self, X, y, y_numeric=True)
        images = _check_images("fit", images, len(y))
        self.images_ = images
        self.y_ = y.astype(float)
        self.n_labels_ = len(y)
        self.y_range_ = float(np.ptp(self.y_))
        self.scaler_ = Standardiser()
        self.candidates_ = NearestNeighbors().fit(self.scaler_.fit_transform(X))
        self.metric_ = build_metric(
            metric_weights(self.metric, self.alpha, self.beta, self.gamma),
            self.lpips_net,
            self.lpips_weights,
        )
        for path in self.images_:  # unreadable labelled images fail here, not at every prediction
            TENSOR_CACHE.get(path, self.size)
        return self

    def predict(self, X: np.ndarray, *, images: Images = None) -> np.ndarray:
        return self.predict_with_confidence(X, images=images)[0]

    def predict_with_confidence(self, X: np.ndarray, *, images: Images = None) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and a confidence in [0, 1]; low confidence = worth labelling next.

        Per query, the candidates are compared in one batch; the k most similar give
        ``prediction = sum(s_i * y_i) / sum(s_i)`` (plain mean if every s_i is 0) and
        ``confidence = mean(s_i) * agreement``, with the similarities s_i in [0, 1] and
        ``agreement = 1 - 2 * std(y_i) / range(all labels)`` as in the KNN predictor.
        """
        check_is_fitted(self, "metric_")
        X = validate_data(self, X, reset=False)
        images = _check_images("predict", images, len(X))
        n_candidates = min(self.n_candidates or self.n_labels_, self.n_labels_)
        _, candidates = self.candidates_.kneighbors(
            self.scaler_.transform(X), n_neighbors=n_candidates
        )
        k = min(self.n_neighbors, n_candidates)
        predictions = np.empty(len(X))
        confidence = np.empty(len(X))
        for row, (path, pool) in enumerate(zip(images, candidates, strict=True)):
            query = comparison_batch([path], self.size).expand(len(pool), -1, -1, -1)
            refs = comparison_batch([self.images_[i] for i in pool], self.size)
            similarity = self.metric_(query, refs)
            top = np.argsort(-similarity, kind="stable")[:k]
            s, labels = similarity[top], self.y_[pool[top]]
            predictions[row] = np.average(labels, weights=s) if s.sum() > 0 else labels.mean()
            agreement = 1.0 - 2.0 * labels.std() / self.y_range_ if self.y_range_ > 0 else 1.0
            confidence[row] = float(np.clip(s.mean() * agreement, 0.0, 1.0))
        return predictions, confidence


def _check_images(step: str, images: Images, rows: int) -> list[Path]:
    if images is None:
        raise ConfigError(f"the similarity predictor's {step} needs the image files of its rows")
    if len(images) != rows:
        raise ConfigError(f"{step} got {rows} feature rows but {len(images)} images")
    return [Path(p) for p in images]
