"""Transductive experimental design: the images a ridge regression learns most from."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from ..config import DEFAULTS
from ..errors import ConfigError
from ..registry import check_int
from .base import nearest
from .embedding import embed

#: The design's ridge penalty (chosen on random subsets of clive-dev: docs/experiments.md).
MU = 0.03


class TEDSelector(BaseEstimator):
    """Transductive experimental design (Yu, Bi & Tresp, ICML 2006): the images from which a ridge
    regression best reconstructs every image's features.

    Greedy: each pick ``j`` maximises ``||K[:, j]||^2 / (K[j, j] + mu)`` on the residual kernel
    ``K`` (linear, on the ``embed``-ded features), which then loses what ``j`` explains:
    ``K -= K[:, j] K[j, :] / (K[j, j] + mu)``. Unlike k-means, which covers the feature space
    evenly, this favours images that are typical of many others *and* unlike those already
    chosen, which is what a ridge predictor trained on them needs (measured against k-means
    and against fewer principal components: docs/experiments.md).

    The same greedy runs in feature space without the N x N kernel (``n_components`` = r, at
    most 512 by default: all of them up to 513 images): per pick O(N r + r^2) time, O(N r)
    memory, so it scales to folders of 100,000 images (docs/performance.md).
    ``mu`` is the ridge penalty of the design: small values reward explaining the features
    exactly (favours outliers), large ones favour dense regions. Deterministic: ``random_state``
    only seeds the PCA of ``embed``. The picks are nested: the first k of a larger ``n_select``
    are the picks for k.

    Attributes: ``selected_`` (``min(n_select, n_samples)`` distinct rows, in pick order),
    ``labels_`` (per row, the index in ``selected_`` of its nearest pick), ``n_clusters_``
    (number of picks).
    """

    def __init__(self, n_select: int = DEFAULTS.n_representatives, n_components: int = 512, mu: float = MU,
                 random_state: int | None = 0) -> None:
        self.n_select = n_select
        self.n_components = n_components
        self.mu = mu
        self.random_state = random_state

    def check_params(self) -> TEDSelector:
        check_int("n_select", self.n_select, 1)
        check_int("n_components", self.n_components, 1)
        if not self.mu > 0:
            raise ConfigError(f"mu must be positive, got {self.mu!r}")
        return self

    def fit(self, X: np.ndarray, y: None = None) -> TEDSelector:
        self.check_params()
        Z = embed(X, self.random_state, self.n_components).astype(np.float64)
        chosen = ted_picks(Z, min(int(self.n_select), len(Z)), float(self.mu))
        self.selected_ = np.array(chosen, dtype=int)
        self.labels_ = nearest(Z, self.selected_)
        self.n_clusters_ = len(chosen)
        return self


def ted_picks(Z: np.ndarray, k: int, mu: float, weights: np.ndarray | None = None) -> list[int]:
    """The greedy design's first ``k`` rows of ``Z``. ``weights``: how many images each row
    stands for (a coreset's cluster sizes), counted in what the picks must explain."""
    # In feature space, with B = (mu I + sum of z z^T over picks)^-1 and S = Z^T W Z, the
    # residual kernel column of row i has (weighted) squared norm n_i = z_i^T B S B z_i and its
    # diagonal is mu q_i with q_i = z_i^T B z_i, so the score is n_i / (1 + q_i) up to a
    # constant. A rank-one (Sherman-Morrison) update of B updates n and q in O(N r).
    S = Z.T @ Z if weights is None else (Z * weights[:, None]).T @ Z
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
    return chosen
