"""``ted``'s picks for folders of millions of images: the design on a coreset made by FAISS."""
from __future__ import annotations

import numpy as np

from ..config import DEFAULTS
from ..errors import ConfigError
from ..registry import check_int
from .base import CountSelector, relabel_by_size
from .embedding import embed
from .faiss_kmeans import faiss_clusters, nearest_members, nearest_rows, require_faiss
from .ted import MU, ted_picks


class FaissTEDSelector(CountSelector):
    """Transductive experimental design (``ted``) on a weighted coreset of the folder.

    ``ted`` scores every image against every other image's features at each pick; beyond a few
    hundred thousand images that pass and its PCA to 512 dimensions dominate. Here FAISS's
    k-means (as in ``faiss-kmeans``) groups the rows into ``coreset`` clusters in the selectors'
    64-dimensional embedding; each cluster's member nearest its centroid stands for it, weighted
    by the cluster's size in what the picks must explain, and the design picks among those
    members. With ``coreset`` rows or fewer the coreset is every row (weights 1): exactly ``ted``
    in that embedding. Each row's label is its nearest pick (a FAISS exact search, in blocks), so
    ``X`` may be a float16 memory map of more rows than fit in memory. Attributes as ``ted``'s.
    """

    def __init__(self, n_select: int = DEFAULTS.n_representatives, random_state: int | None = 0,
                 coreset: int = 1024, mu: float = MU, n_iter: int = 10, max_points_per_centroid: int = 64) -> None:
        super().__init__(n_select, random_state)
        self.coreset = coreset
        self.mu = mu
        self.n_iter = n_iter
        self.max_points_per_centroid = max_points_per_centroid

    def check_params(self) -> FaissTEDSelector:
        super().check_params()
        check_int("coreset", self.coreset, 1)
        check_int("n_iter", self.n_iter, 1)
        check_int("max_points_per_centroid", self.max_points_per_centroid, 1)
        if not self.mu > 0:
            raise ConfigError(f"mu must be positive, got {self.mu!r}")
        if self.coreset < self.n_select:
            raise ConfigError(f"coreset must be at least n_select ({self.n_select}), got {self.coreset}")
        require_faiss("faiss-ted")
        return self

    def fit(self, X: np.ndarray, y: None = None) -> FaissTEDSelector:
        import faiss

        self.check_params()
        Z = np.ascontiguousarray(embed(X, self.random_state), dtype=np.float32)
        if len(Z) <= self.coreset:
            members, weights = np.arange(len(Z)), None
        else:
            raw, distance = faiss_clusters(Z, int(self.coreset), int(self.n_iter), 1, int(self.random_state or 0),
                                           int(self.max_points_per_centroid))
            labels = relabel_by_size(raw)
            members = nearest_members(labels, distance)
            weights = np.bincount(labels).astype(np.float64)
        picks = ted_picks(Z[members].astype(np.float64), min(int(self.n_select), len(members)), float(self.mu),
                          weights)
        self.selected_ = members[picks].astype(int)
        index = faiss.IndexFlatL2(Z.shape[1])
        index.add(Z[self.selected_])
        self.labels_ = nearest_rows(index, Z)[0].astype(int)
        self.n_clusters_ = len(self.selected_)
        return self
