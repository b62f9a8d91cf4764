"""Uniformly random picks: the baseline."""
from __future__ import annotations

import numpy as np

from .base import CountSelector, check_X


class RandomSelector(CountSelector):
    """Uniformly random images: the baseline any smarter selector has to beat.

    ``labels_`` is -1 for every row (no clusters) and ``n_clusters_`` is 0.
    """

    def fit(self, X: np.ndarray, y: None = None) -> RandomSelector:
        self.check_params()
        n_samples = len(check_X(X))
        rng = np.random.default_rng(self.random_state)
        self.selected_ = rng.permutation(n_samples)[: min(self.n_select, n_samples)]
        self.labels_ = np.full(n_samples, -1)
        self.n_clusters_ = 0
        return self
