"""Column standardisation shared by the selectors and the predictors.

Does what scikit-learn's ``StandardScaler`` does (zero mean, unit variance, constant columns only
centred) in a fraction of its time and memory: the moments accumulate in float64 over row chunks,
with no temporary as big as the input, and float32 input stays float32. ``StandardScaler`` was
half of a ridge fit at thousands of labels (docs/performance.md).

``weights`` multiplies standardised columns (one column of weight w counts as w^2 copies of
it in every distance and penalty, without the copies' memory and time).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted


def working_dtype(X: np.ndarray) -> type[np.floating]:
    """float32 for float32 and float16 input (float16 is how features are stored), else float64."""
    return np.float32 if X.dtype in (np.float32, np.float16) else np.float64


class Standardiser(TransformerMixin, BaseEstimator):
    def __init__(self, chunk: int = 1024, weights: dict[int, float] | None = None) -> None:
        self.chunk = chunk
        self.weights = weights

    def fit(self, X: np.ndarray, y: object = None) -> Standardiser:
        X = np.asarray(X)
        mean = X.mean(axis=0, dtype=np.float64)
        centred = mean.astype(working_dtype(X))
        self._set(mean, lambda block: X[block] - centred, X)
        return self

    def fit_transform(self, X: np.ndarray, y: object = None, out: np.ndarray | None = None) -> np.ndarray:
        """Centres one copy and scales it in place: the only array as big as X is the result
        (``out`` when given: X's shape, in ``working_dtype(X)``)."""
        X = np.asarray(X)
        mean = X.mean(axis=0, dtype=np.float64)
        Z = np.subtract(X, mean.astype(working_dtype(X)), out=out)
        self._set(mean, lambda block: Z[block], X)
        Z /= self.scale_.astype(Z.dtype)
        return Z

    def _set(self, mean: np.ndarray, centred_rows: Callable[[slice], np.ndarray], X: np.ndarray) -> None:
        """Store ``mean_`` and ``scale_``; the variance sums ``centred_rows`` chunk by chunk."""
        n = len(X)
        sum_sq = np.zeros(X.shape[1])
        for start in range(0, n, self.chunk):
            block = centred_rows(slice(start, start + self.chunk))
            sum_sq += np.einsum("ij,ij->j", block, block, dtype=np.float64)
        scale = np.sqrt(sum_sq / n)
        scale[scale < 10 * np.finfo(working_dtype(X)).eps] = 1.0
        for column, weight in (self.weights or {}).items():
            scale[column] /= weight  # (x - mean) / (scale / w) = w * standardised x
        self.mean_, self.scale_ = mean, scale

    def transform(self, X: np.ndarray) -> np.ndarray:
        """A standardised copy: float32 for float32 and float16, float64 for anything else."""
        check_is_fitted(self, "scale_")
        X = np.asarray(X)
        Z = X - self.mean_.astype(working_dtype(X))
        Z /= self.scale_.astype(Z.dtype)
        return Z
