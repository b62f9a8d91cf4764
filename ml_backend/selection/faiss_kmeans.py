"""k-means picks for folders of millions of images, with FAISS."""
from __future__ import annotations

import numpy as np

from ..config import DEFAULTS
from ..errors import ConfigError
from ..registry import check_int
from .base import CountSelector, farthest_first, relabel_by_size
from .embedding import embed

#: Rows per block when assigning rows to their nearest centroid (bounds the search's distance table).
CHUNK = 65_536


class FaissKMeansSelector(CountSelector):
    """One image per k-means cluster, like ``kmeans``, at the scale of millions of images.

    scikit-learn's k-means with 10 restarts on every row is what limits ``kmeans`` beyond
    100,000 images (docs/performance.md). Here FAISS runs ``n_init`` times (k-means++ starts, the
    best kept) ``n_iter`` Lloyd iterations on at most ``max_points_per_centroid`` rows per cluster,
    in the same embedding (which streams over row blocks beyond its PCA sample, so ``X`` may be a
    float16 memory map of more rows than fit in memory); then every row is assigned in blocks and
    each cluster's representative is the member nearest its centroid. Attributes as
    ``KMeansSelector``'s.
    """

    def __init__(self, n_select: int = DEFAULTS.n_representatives, random_state: int | None = 0, n_init: int = 3,
                 n_iter: int = 20, max_points_per_centroid: int = 256) -> None:
        super().__init__(n_select, random_state)
        self.n_init = n_init
        self.n_iter = n_iter
        self.max_points_per_centroid = max_points_per_centroid

    def check_params(self) -> FaissKMeansSelector:
        super().check_params()
        check_int("n_init", self.n_init, 1)
        check_int("n_iter", self.n_iter, 1)
        check_int("max_points_per_centroid", self.max_points_per_centroid, 1)
        require_faiss("faiss-kmeans")
        return self

    def fit(self, X: np.ndarray, y: None = None) -> FaissKMeansSelector:
        self.check_params()
        Z = np.ascontiguousarray(embed(X, self.random_state), dtype=np.float32)
        k = min(int(self.n_select), len(Z))
        raw, distance = faiss_clusters(Z, k, int(self.n_iter), int(self.n_init), int(self.random_state or 0),
                                       int(self.max_points_per_centroid))
        self.labels_ = relabel_by_size(raw)
        self.n_clusters_ = int(self.labels_.max()) + 1
        chosen = [int(row) for row in nearest_members(self.labels_, distance)]
        self.selected_ = np.array(farthest_first(Z, chosen, k) if len(chosen) < k else chosen, dtype=int)
        return self


def require_faiss(selector: str) -> None:
    """ConfigError when FAISS is not installed (it is an extra): checked before any work."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        raise ConfigError(f"the {selector} selector needs FAISS: pip install faiss-cpu") from None


def faiss_clusters(Z: np.ndarray, k: int, n_iter: int, n_init: int, seed: int,
                   max_points_per_centroid: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS k-means (k-means++ starts) of the float32 rows ``Z``: each row's cluster and its
    squared distance to the centroid, rows assigned in blocks."""
    import faiss

    kmeans = faiss.Kmeans(Z.shape[1], k, niter=n_iter, nredo=n_init, seed=seed,
                          max_points_per_centroid=max_points_per_centroid,
                          min_points_per_centroid=1,  # only its threshold for a warning on stderr
                          init_method=faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS, verbose=False)
    kmeans.train(Z)
    return nearest_rows(kmeans.index, Z)


def nearest_rows(index: object, Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``Z``, the nearest vector in the FAISS ``index`` and the squared distance to it."""
    found = np.empty(len(Z), dtype=np.int64)
    distance = np.empty(len(Z), dtype=np.float32)
    for start in range(0, len(Z), CHUNK):
        d, i = index.search(Z[start : start + CHUNK], 1)  # type: ignore[attr-defined]
        found[start : start + CHUNK], distance[start : start + CHUNK] = i[:, 0], d[:, 0]
    return found, distance


def nearest_members(labels: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Per cluster (in label order), the member nearest its centroid: the first of its rows by distance."""
    order = np.lexsort((distance, labels))
    return order[np.r_[0, np.flatnonzero(np.diff(labels[order])) + 1]]
