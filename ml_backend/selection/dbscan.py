"""One image per DBSCAN cluster: the number of groups comes from the data."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from ..errors import ConfigError
from ..registry import check_int
from .base import medoid, relabel_by_size
from .embedding import embed

#: A k-distance this many times the next smaller one marks isolated images (see DBSCANSelector).
GAP_FACTOR = 1.5
#: Beyond this many images, DBSCANSelector reads eps off the k-distances of a seeded sample of them.
KDIST_SAMPLE = 10_000


class DBSCANSelector(BaseEstimator):
    """One image per DBSCAN cluster (the member nearest the cluster mean), biggest cluster first.

    DBSCAN finds the number of groups itself and flags isolated images as outliers (-1), which
    are left out unless ``include_outliers``; then they follow the representatives, most isolated
    first. If there is no cluster at all, the most central image is returned so that the result is
    never empty. ``n_select`` caps the number returned.

    With ``eps=None`` it is read off the k-distance curve: each image's distance to its
    ``min_samples``-th nearest neighbour (itself included, as DBSCAN counts), sorted. If the upper
    half of that curve has a sharp knee, i.e. a value more than ``GAP_FACTOR`` (1.5) times the one
    before it, eps is the value just below the first such jump: every image of a group is then a
    core point and only the isolated images beyond the jump are outliers. Without a knee (the
    usual case for diverse photos, whose curve rises smoothly by < 5 % per step) eps is the median
    k-distance, so about half the images are core points: denser groups become clusters and
    images in sparse regions become border points or outliers. Both are scale-free, so eps
    needs no tuning per backbone. Beyond ``KDIST_SAMPLE`` images the curve comes from a seeded
    sample of that many: every image's k-distance costs an N x N distance pass (a third of
    DBSCAN's time in big folders), and a quantile needs no more.

    Attributes: ``selected_``, ``labels_`` (cluster per row, 0 = biggest, -1 = outlier),
    ``n_clusters_``, ``eps_`` (the eps used), ``n_outliers_``.
    """

    def __init__(
        self,
        eps: float | None = None,
        min_samples: int = 5,
        n_select: int | None = None,
        include_outliers: bool = False,
    ) -> None:
        self.eps = eps
        self.min_samples = min_samples
        self.n_select = n_select
        self.include_outliers = include_outliers

    def check_params(self) -> DBSCANSelector:
        check_int("n_select", self.n_select, 1, allow_none=True)
        check_int("min_samples", self.min_samples, 1)
        if self.eps is not None and not self.eps > 0:
            raise ConfigError(f"eps must be positive or None, got {self.eps!r}")
        return self

    def fit(self, X: np.ndarray, y: None = None) -> DBSCANSelector:
        self.check_params()
        Z = embed(X)
        sample = (np.sort(np.random.default_rng(0).choice(len(Z), KDIST_SAMPLE, replace=False))
                  if len(Z) > KDIST_SAMPLE else None)
        kdist = _kth_neighbour_distance(Z, self.min_samples, sample)
        # DBSCAN eps must be > 0; identical rows give a k-distance of 0.
        self.eps_ = float(self.eps) if self.eps is not None else max(_knee_eps(kdist), 1e-9)
        raw = DBSCAN(eps=self.eps_, min_samples=self.min_samples).fit_predict(Z)
        self.labels_ = relabel_by_size(raw)
        self.n_clusters_ = int(self.labels_.max()) + 1
        self.n_outliers_ = int(np.sum(self.labels_ == -1))

        chosen = [medoid(Z, np.flatnonzero(self.labels_ == c)) for c in range(self.n_clusters_)]
        outliers = np.flatnonzero(self.labels_ == -1)
        if self.include_outliers and outliers.size:
            isolation = kdist[outliers] if sample is None else _kth_neighbour_distance(Z, self.min_samples, outliers)
            chosen += [int(i) for i in outliers[np.argsort(-isolation, kind="stable")]]
        if not chosen:
            chosen = [medoid(Z, np.arange(len(Z)))]
        if self.n_select is not None:
            chosen = chosen[: self.n_select]
        self.selected_ = np.array(chosen, dtype=int)
        return self


def _kth_neighbour_distance(Z: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Distance of each row (or of ``rows`` only) to its k-th nearest row, itself counted as the first."""
    distances, _ = NearestNeighbors(n_neighbors=min(k, len(Z))).fit(Z).kneighbors(Z if rows is None else Z[rows])
    return distances[:, -1]


def _knee_eps(kdist: np.ndarray) -> float:
    """DBSCANSelector's eps: below the first sharp jump in the upper half, else the median."""
    upper = np.sort(kdist)[(len(kdist) - 1) // 2 :]
    jumps = np.flatnonzero(upper[1:] > GAP_FACTOR * upper[:-1])
    return float(upper[jumps[0]] if jumps.size else upper[0])
