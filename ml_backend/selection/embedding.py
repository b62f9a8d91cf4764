"""The geometry every selector works in: standardised, PCA-reduced, L2-normalised features."""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import normalize

from ..features.standardise import Standardiser
from .base import check_X

MAX_COMPONENTS = 64
#: Beyond this many images, embed fits its PCA on a seeded sample of them.
PCA_SAMPLE = 20_000


def embed(X: np.ndarray, random_state: int | None = 0, n_components: int = MAX_COMPONENTS) -> np.ndarray:
    """Standardise, PCA to <= ``n_components`` (64) dims, L2-normalise rows.

    Raw pooled CNN features have thousands of correlated, differently scaled columns in which
    Euclidean distances concentrate; this makes distances behave like cosine distances over the
    main directions of variation, so k-means and DBSCAN find meaningful groups.

    Memory: float32 input stays float32. Up to ``PCA_SAMPLE`` images one standardised copy is
    made; beyond, the PCA is fitted on a seeded sample of that many and every image is projected
    in chunks, so no standardised copy of all the features is ever held (the main directions of
    a large sample are those of all the images).
    """
    X = check_X(X)
    n_samples, n_features = X.shape
    # Centred data has rank <= n_samples - 1, so more components would only be noise.
    n_components = min(n_components, n_samples - 1, n_features)
    scaler = Standardiser()
    if n_samples <= PCA_SAMPLE:
        Z = scaler.fit_transform(X)
    else:
        scaler.fit(X)
        sample = np.random.default_rng(random_state).choice(n_samples, PCA_SAMPLE, replace=False)
        Z = scaler.transform(X[np.sort(sample)])
    if n_components < 1 or not Z.any():  # a single image, or all images identical
        return np.zeros((n_samples, 1))
    pca = PCA(n_components=n_components, random_state=random_state, copy=False)
    if n_samples <= PCA_SAMPLE:
        return normalize(pca.fit_transform(Z))
    pca.fit(Z)
    return normalize(np.vstack([pca.transform(scaler.transform(X[start : start + 4096]))
                                for start in range(0, n_samples, 4096)]))


