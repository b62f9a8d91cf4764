"""Transductive experimental design: the images a ridge regression learns most from."""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from ..config import DEFAULTS
from ..errors import ConfigError
from ..prediction.prior import resolve_prior
from ..registry import check_int
from .base import check_X, nearest
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
                 random_state: int | None = 0, prior_weight: float = 0.0, strata: int = 1,
                 prior: str = DEFAULTS.prior) -> None:
        self.n_select = n_select
        self.n_components = n_components
        self.mu = mu
        self.random_state = random_state
        self.prior_weight = prior_weight
        self.strata = strata
        self.prior = prior

    def check_params(self) -> TEDSelector:
        check_int("n_select", self.n_select, 1)
        check_int("n_components", self.n_components, 1)
        check_int("strata", self.strata, 1)
        if not self.mu > 0:
            raise ConfigError(f"mu must be positive, got {self.mu!r}")
        if not self.prior_weight >= 0:
            raise ConfigError(f"prior_weight must be >= 0, got {self.prior_weight!r}")
        return self

    def fit(self, X: np.ndarray, y: None = None) -> TEDSelector:
        """``prior_weight`` > 0: the quality prior's prediction joins the features, weighted as a
        standardised column; ``strata`` > 1: the picks are spread evenly over that many quantile
        bins of the prior's prediction (``ted`` inside each, bins taken in turn). ``prior`` names
        the prior as for the ridge predictor."""
        self.check_params()
        X = check_X(X)
        prior = resolve_prior(self.prior, X.shape[1]) if self.prior_weight > 0 or self.strata > 1 else None
        if (self.prior_weight > 0 or self.strata > 1) and prior is None:
            raise ConfigError(f"prior_weight and strata need a quality prior for these features (prior={self.prior!r})")
        p = None if prior is None else prior.predict(X)
        weights = None
        if p is not None and self.prior_weight > 0:
            X = np.hstack([X, p[:, None].astype(X.dtype)])
            weights = {X.shape[1] - 1: float(self.prior_weight)}
        Z = embed(X, self.random_state, self.n_components, weights).astype(np.float64)
        k = min(int(self.n_select), len(Z))
        if p is None or self.strata == 1:
            chosen = _greedy(Z, k, float(self.mu))
        else:
            bins = np.array_split(np.argsort(p, kind="stable"), min(int(self.strata), len(Z)))
            quota = [len(part) for part in np.array_split(np.arange(k), len(bins))]
            picks = [part[_greedy(Z[part], min(q, len(part)), float(self.mu))]
                     for part, q in zip(bins, quota, strict=True)]
            chosen = [int(pk[i]) for i in range(max(map(len, picks))) for pk in picks if i < len(pk)]
        self.selected_ = np.array(chosen, dtype=int)
        self.labels_ = nearest(Z, self.selected_)
        self.n_clusters_ = len(chosen)
        return self


def _greedy(Z: np.ndarray, k: int, mu: float) -> list[int]:
    """The first ``k`` greedy TED picks among the rows of ``Z`` (see TEDSelector)."""
    # In feature space, with B = (mu I + sum of z z^T over picks)^-1 and S = Z^T Z, the
    # residual kernel column of row i has squared norm n_i = z_i^T B S B z_i and its diagonal
    # is mu q_i with q_i = z_i^T B z_i, so the score is n_i / (1 + q_i) up to a constant.
    # A rank-one (Sherman-Morrison) update of B updates n and q in O(N r).
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
    return chosen
