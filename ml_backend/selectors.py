"""Pick a handful of representative images to rate first, from their feature vectors.

Every selector follows scikit-learn conventions: ``fit(X)`` returns self and sets ``selected_``
(distinct row indices of X, in the order to rate them), ``labels_`` (cluster per row, -1 for
none) and ``n_clusters_``.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.cluster import DBSCAN, KMeans
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import normalize

from ml_backend.registry import Registry
from ml_backend.standardise import Standardiser

SELECTORS: Registry[BaseEstimator] = Registry("selector")

MAX_COMPONENTS = 64
#: A k-distance this many times the next smaller one marks isolated images (see DBSCANSelector).
GAP_FACTOR = 1.5
#: Beyond this many images, DBSCANSelector reads eps off the k-distances of a seeded sample of them.
KDIST_SAMPLE = 10_000
#: TEDSelector's default ridge penalty of the design, chosen on random 320-image subsets of clive-dev.
MU = 0.03
#: Beyond this many images, embed fits its PCA on a seeded sample of them.
PCA_SAMPLE = 20_000


def embed(X: np.ndarray, random_state: int | None = 0, n_components: int = MAX_COMPONENTS) -> np.ndarray:
    """Standardise, PCA to <= ``n_components`` (64) dims, L2-normalise rows.

    Raw pooled CNN features have thousands of correlated, differently scaled columns in which
    Euclidean distances concentrate; this makes distances behave like cosine distances over the
    main directions of variation, so k-means and DBSCAN find meaningful groups.

    Memory: float32 input stays float32. Up to ``PCA_SAMPLE`` (20,000) images one standardised
    copy is made; beyond, the PCA is fitted on a seeded sample of that many and every image is
    projected in chunks, so 100,000 x 3,904 features need ~0.5 GB on top of the input instead
    of ~1.5 GB, in a third of the time (the main directions of 20,000 images are those of all).
    """
    X = _check_X(X)
    n_samples, n_features = X.shape
    # Centred data has rank <= n_samples - 1, so more components would only be noise.
    n_components = min(n_components, n_samples - 1, n_features)
    scaler = Standardiser()
    if n_samples <= PCA_SAMPLE:
        Z = scaler.fit_transform(X)
    else:
        scaler.fit(X)
        Z = scaler.transform(X[np.sort(np.random.default_rng(random_state).choice(n_samples, PCA_SAMPLE, replace=False))])
    if n_components < 1 or not Z.any():  # a single image, or all images identical
        return np.zeros((n_samples, 1))
    pca = PCA(n_components=n_components, random_state=random_state, copy=False)
    if n_samples <= PCA_SAMPLE:
        return normalize(pca.fit_transform(Z))
    pca.fit(Z)
    return normalize(np.vstack([pca.transform(scaler.transform(X[start : start + 4096]))
                                for start in range(0, n_samples, 4096)]))


def _check_X(X: np.ndarray) -> np.ndarray:
    """A 2-D finite float matrix; float32 is kept (half the memory), anything else is float64."""
    X = np.asarray(X)
    X = X if X.dtype == np.float32 else np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D feature matrix, got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError("no images to select from")
    if not np.isfinite(X).all():
        raise ValueError("features contain NaN or infinite values")
    return X


def _check_positive_int(name: str, value: object, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... by decreasing size (ties: old id) so cluster 0 is the biggest.

    Noise (-1) stays -1.
    """
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(label, -1) for label in labels], dtype=int)


def _medoid(Z: np.ndarray, members: np.ndarray) -> int:
    """The member nearest the members' mean: a real image that stands for the whole group."""
    centre = Z[members].mean(axis=0)
    return int(members[np.argmin(np.linalg.norm(Z[members] - centre, axis=1))])


def _farthest_first(Z: np.ndarray, chosen: list[int], n_total: int) -> list[int]:
    """Extend non-empty ``chosen`` to ``n_total`` rows, each time the row farthest from the chosen.

    Covers k-means finding fewer clusters than asked (duplicate images) while still returning
    distinct, diverse rows.
    """
    chosen = list(chosen)
    available = np.ones(len(Z), dtype=bool)
    available[chosen] = False
    dist = pairwise_distances(Z, Z[chosen]).min(axis=1)
    while len(chosen) < n_total:
        candidates = np.flatnonzero(available)
        pick = int(candidates[np.argmax(dist[candidates])])
        chosen.append(pick)
        available[pick] = False
        dist = np.minimum(dist, np.linalg.norm(Z - Z[pick], axis=1))
    return chosen


@SELECTORS.register("kmeans")
class KMeansSelector(BaseEstimator):
    """One image per k-means cluster: the member nearest the centroid.

    Attributes: ``selected_`` (exactly ``min(n_select, n_samples)`` distinct rows; the i-th is the
    representative of cluster i, clusters ordered by size descending, then farthest-first extras
    if k-means produced fewer non-empty clusters), ``labels_`` (cluster per row, 0 = biggest),
    ``n_clusters_`` (non-empty clusters).
    """

    def __init__(self, n_select: int = 20, random_state: int | None = 0) -> None:
        self.n_select = n_select
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: None = None) -> "KMeansSelector":
        _check_positive_int("n_select", self.n_select)
        Z = embed(X, self.random_state)
        k = min(int(self.n_select), len(Z))
        with warnings.catch_warnings():
            # Duplicate images make k-means find fewer distinct clusters; handled below.
            warnings.simplefilter("ignore", ConvergenceWarning)
            raw = KMeans(n_clusters=k, n_init=10, random_state=self.random_state).fit_predict(Z)
        self.labels_ = _relabel_by_size(raw)
        self.n_clusters_ = int(self.labels_.max()) + 1
        # Clusters are disjoint, so their medoids are distinct rows.
        chosen = [_medoid(Z, np.flatnonzero(self.labels_ == c)) for c in range(self.n_clusters_)]
        self.selected_ = np.array(_farthest_first(Z, chosen, k), dtype=int)
        return self


@SELECTORS.register("dbscan")
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
    needs no tuning per backbone. Beyond ``KDIST_SAMPLE`` (10,000) images the curve comes from a
    seeded sample of that many: every image's k-distance costs an N x N distance pass (23 s of
    the 69 s DBSCAN took at 100,000 images), and a quantile needs no more.

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

    def fit(self, X: np.ndarray, y: None = None) -> "DBSCANSelector":
        _check_positive_int("n_select", self.n_select, allow_none=True)
        _check_positive_int("min_samples", self.min_samples)
        if self.eps is not None and not self.eps > 0:
            raise ValueError(f"eps must be positive or None, got {self.eps!r}")
        Z = embed(X)
        sample = (np.sort(np.random.default_rng(0).choice(len(Z), KDIST_SAMPLE, replace=False))
                  if len(Z) > KDIST_SAMPLE else None)
        kdist = _kth_neighbour_distance(Z, self.min_samples, sample)
        # DBSCAN eps must be > 0; identical rows give a k-distance of 0.
        self.eps_ = float(self.eps) if self.eps is not None else max(_knee_eps(kdist), 1e-9)
        raw = DBSCAN(eps=self.eps_, min_samples=self.min_samples).fit_predict(Z)
        self.labels_ = _relabel_by_size(raw)
        self.n_clusters_ = int(self.labels_.max()) + 1
        self.n_outliers_ = int(np.sum(self.labels_ == -1))

        chosen = [_medoid(Z, np.flatnonzero(self.labels_ == c)) for c in range(self.n_clusters_)]
        outliers = np.flatnonzero(self.labels_ == -1)
        if self.include_outliers and outliers.size:
            isolation = kdist[outliers] if sample is None else _kth_neighbour_distance(Z, self.min_samples, outliers)
            chosen += [int(i) for i in outliers[np.argsort(-isolation, kind="stable")]]
        if not chosen:
            chosen = [_medoid(Z, np.arange(len(Z)))]
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


@SELECTORS.register("kcenter")
class KCenterSelector(BaseEstimator):
    """k-center greedy: the most central image, then each time the image farthest from all chosen.

    Covers the whole feature space, outliers included (they are picked early), in O(N * k) time
    and O(N) extra memory, so it scales to any folder size. Deterministic: ``random_state`` only
    seeds the PCA of ``embed``.

    Attributes: ``selected_`` (``min(n_select, n_samples)`` distinct rows, in pick order),
    ``labels_`` (per row, the index in ``selected_`` of its nearest chosen centre),
    ``n_clusters_`` (number of centres).
    """

    def __init__(self, n_select: int = 20, random_state: int | None = 0) -> None:
        self.n_select = n_select
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: None = None) -> "KCenterSelector":
        _check_positive_int("n_select", self.n_select)
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


@SELECTORS.register("ted")
class TEDSelector(BaseEstimator):
    """Transductive experimental design (Yu, Bi & Tresp, ICML 2006): the images from which a ridge
    regression best reconstructs every image's features.

    Greedy: each pick ``j`` maximises ``||K[:, j]||^2 / (K[j, j] + mu)`` on the residual kernel
    ``K`` (linear, on the ``embed``-ded features), which then loses what ``j`` explains:
    ``K -= K[:, j] K[j, :] / (K[j, j] + mu)``. Unlike k-means, which covers the feature space
    evenly, this favours images that are typical of many others *and* unlike those already
    chosen, which is what a ridge predictor trained on them needs: on random subsets of
    clive-dev it gave ridge SRCC +0.025 / +0.023 over k-means at 50 / 100 labels (README,
    "Label efficiency"), where all principal components beat 256 and 128 of them.

    The same greedy runs in feature space without the N x N kernel (``n_components`` = r, at
    most 512 by default: all of them up to 513 images): per pick O(N r + r^2) time, O(N r)
    memory, so it scales to 100,000-image folders (17 s there).
    ``mu`` is the ridge penalty of the design: small values reward explaining the features
    exactly (favours outliers), large ones favour dense regions. Deterministic: ``random_state``
    only seeds the PCA of ``embed``. The picks are nested: the first k of a larger ``n_select``
    are the picks for k.

    Attributes: ``selected_`` (``min(n_select, n_samples)`` distinct rows, in pick order),
    ``labels_`` (per row, the index in ``selected_`` of its nearest pick), ``n_clusters_``
    (number of picks).
    """

    def __init__(self, n_select: int = 20, n_components: int = 512, mu: float = MU,
                 random_state: int | None = 0) -> None:
        self.n_select = n_select
        self.n_components = n_components
        self.mu = mu
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: None = None) -> "TEDSelector":
        _check_positive_int("n_select", self.n_select)
        _check_positive_int("n_components", self.n_components)
        if not self.mu > 0:
            raise ValueError(f"mu must be positive, got {self.mu!r}")
        Z = embed(X, self.random_state, self.n_components).astype(np.float64)
        k = min(int(self.n_select), len(Z))
        # In feature space, with B = (mu I + sum of z z^T over picks)^-1 and S = Z^T Z, the
        # residual kernel column of row i has squared norm n_i = z_i^T B S B z_i and its diagonal
        # is mu q_i with q_i = z_i^T B z_i, so the score is n_i / (1 + q_i) up to a constant.
        # A rank-one (Sherman-Morrison) update of B updates n and q in O(N r).
        mu = float(self.mu)
        S = Z.T @ Z
        B = np.eye(Z.shape[1]) / mu
        q = np.einsum("ij,ij->i", Z, Z) / mu
        n = np.einsum("ij,ij->i", Z @ S, Z) / mu**2
        available = np.ones(len(Z), dtype=bool)
        chosen: list[int] = []
        while len(chosen) < k:
            # Masking chosen rows keeps picks distinct even among duplicate images.
            pick = int(np.argmax(np.where(available, n / (1.0 + q), -np.inf)))
            chosen.append(pick)
            available[pick] = False
            u = B @ Z[pick]
            c = 1.0 + Z[pick] @ u
            Su = S @ u
            a = Z @ u
            n -= 2.0 * a * (Z @ (B @ Su)) / c - a**2 * (u @ Su) / c**2
            q -= a**2 / c
            B -= np.outer(u, u) / c
        self.selected_ = np.array(chosen, dtype=int)
        self.labels_ = _nearest(Z, self.selected_)
        self.n_clusters_ = len(chosen)
        return self


def _nearest(Z: np.ndarray, centres: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Per row, the index in ``centres`` of the nearest of those rows (chunked: bounded memory)."""
    return np.concatenate([pairwise_distances(Z[start : start + chunk], Z[centres]).argmin(axis=1)
                           for start in range(0, len(Z), chunk)])


@SELECTORS.register("random")
class RandomSelector(BaseEstimator):
    """Uniformly random images: the baseline any smarter selector has to beat.

    ``labels_`` is -1 for every row (no clusters) and ``n_clusters_`` is 0.
    """

    def __init__(self, n_select: int = 20, random_state: int | None = 0) -> None:
        self.n_select = n_select
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: None = None) -> "RandomSelector":
        _check_positive_int("n_select", self.n_select)
        n_samples = len(_check_X(X))
        rng = np.random.default_rng(self.random_state)
        self.selected_ = rng.permutation(n_samples)[: min(self.n_select, n_samples)]
        self.labels_ = np.full(n_samples, -1)
        self.n_clusters_ = 0
        return self
