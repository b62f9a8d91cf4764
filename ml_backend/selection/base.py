"""What every selector provides, and the helpers they share.

A selector follows scikit-learn conventions: ``fit(X)`` returns self and sets ``selected_``
(distinct row indices of X, in the order to rate them), ``labels_`` (cluster per row, -1 for
none) and ``n_clusters_``. ``check_params`` validates the constructor's values without fitting.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.metrics import pairwise_distances

from ..config import DEFAULTS
from ..errors import ConfigError
from ..registry import check_int


class Selector(Protocol):
    selected_: np.ndarray
    labels_: np.ndarray
    n_clusters_: int

    def check_params(self) -> Selector: ...

    def fit(self, X: np.ndarray, y: None = None) -> Selector: ...


class CountSelector(BaseEstimator):
    """A selector that picks ``n_select`` images, seeded by ``random_state``."""

    def __init__(self, n_select: int = DEFAULTS.n_representatives, random_state: int | None = 0) -> None:
        self.n_select = n_select
        self.random_state = random_state

    def check_params(self) -> CountSelector:
        check_int("n_select", self.n_select, 1)
        return self


def check_X(X: np.ndarray) -> np.ndarray:
    """A 2-D finite float matrix; float32 and float16 are kept (a fraction of the memory; a memory
    map stays one), anything else is float64. Checked in row blocks: no temporary as big as X."""
    X = np.asarray(X)
    X = X if X.dtype in (np.float32, np.float16) else np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ConfigError(f"expected a 2-D feature matrix, got shape {X.shape}")
    if X.shape[0] == 0:
        raise ConfigError("no images to select from")
    if not all(np.isfinite(X[start : start + 4096]).all() for start in range(0, len(X), 4096)):
        raise ConfigError("features contain NaN or infinite values")
    return X


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... by decreasing size (ties: old id) so cluster 0 is the biggest.

    Noise (-1) stays -1.
    """
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = ids[np.lexsort((ids, -counts))]
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping.get(label, -1) for label in labels], dtype=int)


def medoid(Z: np.ndarray, members: np.ndarray) -> int:
    """The member nearest the members' mean: a real image that stands for the whole group."""
    centre = Z[members].mean(axis=0)
    return int(members[np.argmin(np.linalg.norm(Z[members] - centre, axis=1))])


def farthest_first(Z: np.ndarray, chosen: list[int], n_total: int) -> list[int]:
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



def nearest(Z: np.ndarray, centres: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Per row, the index in ``centres`` of the nearest of those rows (chunked: bounded memory)."""
    return np.concatenate([pairwise_distances(Z[start : start + chunk], Z[centres]).argmin(axis=1)
                           for start in range(0, len(Z), chunk)])


