"""One image per k-means cluster: even coverage of the feature space."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from .base import CountSelector, farthest_first, medoid, relabel_by_size
from .embedding import embed


class KMeansSelector(CountSelector):
    """One image per k-means cluster: the member nearest the centroid.

    Attributes: ``selected_`` (exactly ``min(n_select, n_samples)`` distinct rows; the i-th is the
    representative of cluster i, clusters ordered by size descending, then farthest-first extras
    if k-means produced fewer non-empty clusters), ``labels_`` (cluster per row, 0 = biggest),
    ``n_clusters_`` (non-empty clusters).
    """

    def fit(self, X: np.ndarray, y: None = None) -> KMeansSelector:
        self.check_params()
        Z = embed(X, self.random_state)
        k = min(int(self.n_select), len(Z))
        with warnings.catch_warnings():
            # Duplicate images make k-means find fewer distinct clusters; handled below.
            warnings.simplefilter("ignore", ConvergenceWarning)
            raw = KMeans(n_clusters=k, n_init=10, random_state=self.random_state).fit_predict(Z)
        self.labels_ = relabel_by_size(raw)
        self.n_clusters_ = int(self.labels_.max()) + 1
        # Clusters are disjoint, so their medoids are distinct rows.
        chosen = [medoid(Z, np.flatnonzero(self.labels_ == c)) for c in range(self.n_clusters_)]
        self.selected_ = np.array(farthest_first(Z, chosen, k), dtype=int)
        return self
