"""The folder's own structure: the best of several clusterings, one representative per cluster."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.mixture import GaussianMixture

from .base import CountSelector, medoid, relabel_by_size
from .embedding import embed

#: Beyond these sizes a method is skipped (agglomerative needs n^2 memory) or scored on a sample.
MAX_AGGLOMERATIVE = 5_000
SILHOUETTE_SAMPLE = 2_000


@dataclass(frozen=True)
class Clustering:
    method: str
    n_clusters: int
    silhouette: float  # the choice: higher is better
    davies_bouldin: float  # lower is better (reported)
    calinski_harabasz: float  # higher is better (reported)


class AutoSelector(CountSelector):
    """Clusters the folder with k-means, agglomerative (Ward), a Gaussian mixture and HDBSCAN,
    each at several cluster counts up to ``n_select`` (HDBSCAN finds its own), keeps the one with
    the best silhouette, and picks the member nearest each cluster's centre (largest cluster
    first). HDBSCAN's noise is no cluster.

    Attributes: ``selected_``, ``labels_`` (cluster per row, -1 = noise), ``n_clusters_``,
    ``structure_`` (the chosen ``Clustering``), ``candidates_`` (every clustering tried).
    """

    def fit(self, X: np.ndarray, y: None = None) -> AutoSelector:
        self.check_params()
        Z = embed(X, self.random_state)
        n = len(Z)
        top = min(int(self.n_select), n - 1)
        candidates: list[tuple[Clustering, np.ndarray]] = []
        if top >= 2:
            counts = sorted({int(round(k)) for k in np.geomspace(2, top, min(6, top - 1))})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                for k in counts:
                    candidates.append(self._score("kmeans", Z, KMeans(k, n_init=4, random_state=self.random_state)
                                                  .fit_predict(Z)))
                    candidates.append(self._score("gaussian mixture", Z, GaussianMixture(
                        k, covariance_type="diag", random_state=self.random_state).fit(Z).predict(Z)))
                    if n <= MAX_AGGLOMERATIVE:
                        candidates.append(self._score("agglomerative", Z, AgglomerativeClustering(k).fit_predict(Z)))
                hdbscan = HDBSCAN(min_cluster_size=max(2, n // 50), copy=True)
                candidates.append(self._score("hdbscan", Z, hdbscan.fit_predict(Z)))
        scored = [c for c in candidates if c[0].n_clusters >= 2]
        self.candidates_ = [c for c, _ in scored]
        if not scored:  # one image, or no structure at all: one cluster
            labels = np.zeros(n, dtype=int)
            self.structure_ = None
        else:
            best, labels = max(scored, key=lambda c: c[0].silhouette)
            self.structure_ = best
        clustered = labels >= 0
        self.labels_ = np.full(n, -1, dtype=int)
        self.labels_[clustered] = relabel_by_size(labels[clustered])
        self.n_clusters_ = int(self.labels_.max()) + 1
        self.selected_ = np.array([medoid(Z, np.flatnonzero(self.labels_ == c)) for c in range(self.n_clusters_)],
                                  dtype=int)
        return self

    def _score(self, method: str, Z: np.ndarray, labels: np.ndarray) -> tuple[Clustering, np.ndarray]:
        inside = labels >= 0
        found = len(set(labels[inside].tolist()))
        if found < 2 or found >= inside.sum():
            return Clustering(method, found, -1.0, float("inf"), 0.0), labels
        sample = min(SILHOUETTE_SAMPLE, int(inside.sum()))
        silhouette = float(silhouette_score(Z[inside], labels[inside], sample_size=sample,
                                            random_state=self.random_state))
        return Clustering(method, found, silhouette, float(davies_bouldin_score(Z[inside], labels[inside])),
                          float(calinski_harabasz_score(Z[inside], labels[inside]))), labels
