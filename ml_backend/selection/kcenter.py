"""k-center greedy: picks spread as far apart as possible, outliers early."""
from __future__ import annotations

import numpy as np

from .base import CountSelector
from .embedding import embed


class KCenterSelector(CountSelector):
    """k-center greedy: the most central image, then each time the image farthest from all chosen.

    Covers the whole feature space, outliers included (they are picked early), in O(N * k) time
    and O(N) extra memory, so it scales to any folder size. Deterministic: ``random_state`` only
    seeds the PCA of ``embed``.

    Attributes: ``selected_`` (``min(n_select, n_samples)`` distinct rows, in pick order),
    ``labels_`` (per row, the index in ``selected_`` of its nearest chosen centre),
    ``n_clusters_`` (number of centres).
    """

    def fit(self, X: np.ndarray, y: None = None) -> KCenterSelector:
        self.check_params()
        Z = embed(X, self.random_state)
        k = min(int(self.n_select), len(Z))
        first = int(np.argmin(np.linalg.norm(Z - Z.mean(axis=0), axis=1)))
        chosen = [first]
        dist = np.linalg.norm(Z - Z[first], axis=1)
        labels = np.zeros(len(Z), dtype=int)
        available = np.ones(len(Z), dtype=bool)
        available[first] = False
        while len(chosen) < k:
            # Masking chosen rows keeps picks distinct even among duplicate images (distance 0).
            pick = int(np.argmax(np.where(available, dist, -1.0)))
            new = np.linalg.norm(Z - Z[pick], axis=1)
            closer = new < dist
            labels[closer] = len(chosen)
            labels[pick] = len(chosen)
            dist = np.minimum(dist, new)
            chosen.append(pick)
            available[pick] = False
        self.selected_ = np.array(chosen, dtype=int)
        self.labels_ = labels
        self.n_clusters_ = len(chosen)
        return self
