"""The linear algebra behind RidgePredictor: leave-one-out penalty choice and Cholesky solves."""
from __future__ import annotations

from collections.abc import Hashable

import numpy as np
from scipy import linalg
from scipy.linalg import blas

from ..errors import ConfigError


def gram_eigen(Xs: np.ndarray, dtype: type[np.floating] = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvectors and eigenvalues of ``Xs Xs^T``: the left singular vectors and squared singular
    values of ``Xs``, at O(n^2 d + n^3) instead of an SVD's O(n d^2). The product is formed in
    ``dtype`` (float32 is enough to choose a penalty, at half the time), decomposed in float64."""
    A = Xs.astype(dtype, copy=False)
    eig, U = np.linalg.eigh((A @ A.T).astype(float))
    return U, np.clip(eig, 0.0, None)


def loo_residuals(U: np.ndarray, eig: np.ndarray, Uy: np.ndarray, yc: np.ndarray, alpha: float,
                  intercept: np.ndarray | float | None = None) -> np.ndarray:
    """Leave-one-out residuals ``r_i / (1 - H_ii)`` of ridge plus intercept at ``alpha``, H its hat
    matrix (``yc`` is centred, ``Uy = U^T yc``): label minus the prediction without that label.
    ``intercept``: the intercept's share of each leverage (1/n; ``w_i / sum w`` for weighted rows,
    whose ``yc`` and ``U`` are then those of the rows scaled by ``sqrt(w)``)."""
    filt = eig / (eig + alpha)
    leverage = (U**2) @ filt + (1.0 / len(yc) if intercept is None else intercept)
    return (yc - U @ (filt * Uy)) / np.maximum(1.0 - leverage, 1e-12)


def best_alpha(U: np.ndarray, eig: np.ndarray, Uy: np.ndarray, yc: np.ndarray, alphas: np.ndarray,
               intercept: np.ndarray | float | None = None) -> float:
    """The penalty with the smallest mean squared leave-one-out residual."""
    if len(yc) < 3:
        return float(alphas[0])
    errors = [np.mean(loo_residuals(U, eig, Uy, yc, alpha, intercept) ** 2) for alpha in alphas]
    return float(alphas[int(np.argmin(errors))])


def matched_rows(old: np.ndarray, old_ids: list[Hashable], old_weights: np.ndarray, new: np.ndarray,
                 new_ids: list[Hashable], new_weights: np.ndarray, block: int = 256) -> tuple[np.ndarray, ...]:
    """Which rows stayed (same id, features and weight: their positions in ``new`` and in
    ``old``), which of ``new`` are added and which of ``old`` are gone."""
    position = {row_id: i for i, row_id in enumerate(old_ids)}
    pairs = np.array([(j, position[row_id]) for j, row_id in enumerate(new_ids) if row_id in position],
                     dtype=int).reshape(-1, 2)
    same = np.concatenate([np.all(new[part[:, 0]] == old[part[:, 1]], axis=1)
                           & (new_weights[part[:, 0]] == old_weights[part[:, 1]])
                           for part in np.array_split(pairs, max(1, len(pairs) // block))])
    kept = pairs[same]
    return (kept[:, 0], kept[:, 1], np.setdiff1d(np.arange(len(new)), kept[:, 0]),
            np.setdiff1d(np.arange(len(old)), kept[:, 1]))


class NormalMatrix:
    """``sum over rows of w (x - center)(x - center)^T`` (d x d, float64) and the rows (and their
    weights ``w``, default 1) it sums.

    Kept by a ridge fit with many labels (``RidgePredictor``), so that the next fit adds and removes
    only the rows that changed: O(d^2) per changed row instead of O(n d^2). Rows are matched by
    id *and* content, so an id whose features
    changed (a replaced image) is swapped out, not kept stale. ``center`` is the mean of the rows
    it was first computed from: summing about a point near the mean keeps float32 accurate.
    ``precise`` sums and solves in float64 instead, for a tiny penalty: the matrix is then nearly
    singular and float32 rounding would reach the solution.

    Updates and solves work in place, in buffers that move from fit to fit: the page faults of a
    fresh d x d array cost more than the arithmetic on the machines measured (docs/performance.md).

    ``token`` names the warm state it belongs to (``RidgeWarmState.claim``); changing it clears it.

    A solve keeps its Cholesky factor; a later solve at the same penalty and scale, after at most
    ``MAX_LOW_RANK`` changed rows, corrects that factor's solution for the change (Woodbury:
    O(d^2) per changed row instead of the O(d^3) factorization), still checked against the
    updated matrix.
    """

    #: Beyond this fraction of changed rows, recomputing is cheaper than updating.
    MAX_CHANGED = 0.25
    #: Rows per block when comparing or transforming, to keep temporaries small.
    BLOCK = 256
    #: Changed rows a kept factor is corrected for before it is computed again.
    MAX_LOW_RANK = 64

    def __init__(self, X: np.ndarray, ids: list[Hashable], weights: np.ndarray | None = None,
                 precise: bool = False) -> None:
        self.token: object = None
        self.ids = list(ids)
        self.rows = X
        self.weights = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=float)
        self.precise = precise
        self.center = X.mean(axis=0, dtype=np.float64)
        dtype, syrk = (np.float64, blas.dsyrk) if precise else (np.float32, blas.ssyrk)
        scaled = np.empty(X.shape, dtype=dtype)  # its transpose is the d x n Fortran array BLAS reads
        np.subtract(X, self.center, out=scaled, casting="unsafe")
        scaled *= np.sqrt(self.weights).astype(dtype)[:, None]
        # BLAS fills the lower triangle of a Fortran-order matrix: the upper one of its C-order transpose
        self.gram = syrk(1.0, scaled.T, trans=0, lower=1).T.astype(float, copy=False)  # C order: see update
        _mirror_upper(self.gram, self.BLOCK)
        self._factor = np.empty(self.gram.shape, dtype=dtype)
        self._kept: _KeptFactor | None = None

    def update(self, X: np.ndarray, ids: list[Hashable], weights: np.ndarray | None = None) -> bool:
        """Replace the rows by ``X`` (with ``weights``) in place; False (nothing changed) when too
        many rows differ. A row whose weight changed counts as changed."""
        if self.rows.shape[1] != X.shape[1]:
            return False
        weights = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=float)
        _, _, added, removed = matched_rows(self.rows, self.ids, self.weights, X, ids, weights)
        if len(added) + len(removed) > self.MAX_CHANGED * len(X):
            return False
        # The gram is symmetric, so its transpose (Fortran order, as BLAS needs to write in
        # place: a C-order ``c`` would be copied and the update lost) is the same matrix.
        self.apply(X, ids, weights, added, removed)
        return True

    def apply(self, X: np.ndarray, ids: list[Hashable], weights: np.ndarray, added: np.ndarray,
              removed: np.ndarray) -> None:
        """Replace the rows by ``X``, given which of them are new (``added``, positions in ``X``)
        and which old ones are gone (``removed``, positions in the current rows)."""
        self.token = None
        for rows, w, sign in ((X[added], weights[added], 1.0), (self.rows[removed], self.weights[removed], -1.0)):
            if len(rows):
                delta = (rows - self.center) * np.sqrt(w)[:, None]
                blas.dgemm(sign, delta, delta, trans_a=True, beta=1.0, c=self.gram.T, overwrite_c=True)
                if self._kept is not None:
                    self._kept.changes.append((delta, sign))
        self.ids, self.rows, self.weights = list(ids), X, np.asarray(weights, dtype=float)

    def solve(self, mean: np.ndarray, scale: np.ndarray, rhs: np.ndarray, alpha: float) -> np.ndarray:
        """``(Xs^T W Xs + alpha I)^-1 rhs`` for ``Xs = (X - mean) / scale`` by Cholesky, ``mean``
        the rows' (weighted) mean: float32 first (twice as fast), float64 if float32 fails or is
        inaccurate; float64 only when ``precise``."""
        n = float(self.weights.sum())
        shift = mean - self.center

        def standardised(out: np.ndarray) -> np.ndarray:
            for start in range(0, len(out), self.BLOCK):
                part = slice(start, start + self.BLOCK)
                block = self.gram[part] - n * np.outer(shift[part], shift)
                block /= np.outer(scale[part], scale)
                out[part] = block
            out[np.diag_indices_from(out)] += alpha
            return out

        def residual(w: np.ndarray) -> float:
            v = w / scale
            product = (self.gram @ v - n * shift * (shift @ v)) / scale
            return float(np.linalg.norm(product + alpha * w - rhs))

        tolerance = 1e-3 * np.linalg.norm(rhs)
        kept = self._kept
        if kept is not None and kept.alpha == alpha and np.array_equal(kept.scale, scale) and \
                sum(len(delta) for delta, _ in kept.changes) <= self.MAX_LOW_RANK:
            try:
                solution = kept.corrected(rhs, scale, n, shift)
            except np.linalg.LinAlgError:
                solution = None
            if solution is not None and residual(solution) <= tolerance:
                return solution
        self._kept = None
        for buffer in (self._factor,) if self.precise else (self._factor, None):
            matrix = standardised(np.empty_like(self.gram) if buffer is None else buffer)
            try:  # the transpose is the same symmetric matrix in the Fortran order LAPACK overwrites
                cholesky = linalg.cho_factor(matrix.T, lower=True, overwrite_a=True, check_finite=False)
            except np.linalg.LinAlgError:
                continue
            solution = linalg.cho_solve(cholesky, rhs.astype(matrix.dtype), check_finite=False).astype(float)
            if residual(solution) <= tolerance:
                self._kept = _KeptFactor(cholesky, alpha, scale.copy(), n, shift.copy())
                return solution
        raise ConfigError(f"ridge penalty {alpha:g} is too small to solve for these features")


def _mirror_upper(a: np.ndarray, block: int) -> None:
    """Copy the upper triangle of the square ``a`` onto its lower one, a block of rows at a time
    (one whole transposed copy of thousands of dimensions costs more than the product itself)."""
    for start in range(0, len(a), block):
        stop = min(start + block, len(a))
        a[stop:, start:stop] = a[start:stop, stop:].T
        diagonal = a[start:stop, start:stop]
        below = np.tril_indices(stop - start, -1)
        diagonal[below] = diagonal.T[below]


class _KeptFactor:
    """The Cholesky factor of ``D^-1 (G - n s s^T) D^-1 + alpha I`` as a solve left it (``G`` the
    normal matrix then, ``s`` the shift of the rows' mean from its centre, ``D`` the scale), and
    the rows added (+) or removed (-) from ``G`` since, as ``(x - centre) sqrt(w)``."""

    def __init__(self, cholesky: tuple[np.ndarray, bool], alpha: float, scale: np.ndarray, n: float,
                 shift: np.ndarray) -> None:
        self.cholesky, self.alpha, self.scale, self.n, self.shift = cholesky, alpha, scale, n, shift
        self.changes: list[tuple[np.ndarray, float]] = []

    def corrected(self, rhs: np.ndarray, scale: np.ndarray, n: float, shift: np.ndarray) -> np.ndarray:
        """``M^-1 rhs`` for today's matrix ``M = M0 + V S V^T`` (Woodbury), ``M0`` the factored one:
        ``V`` holds the changed rows and both mean shifts, all divided by the scale."""
        columns = [delta for delta, _ in self.changes] + [self.shift[None, :], shift[None, :]]
        signs = [np.full(len(delta), sign) for delta, sign in self.changes] + [np.array([self.n]), np.array([-n])]
        V = (np.vstack(columns) / scale).T  # d x k
        S = np.concatenate(signs)
        dtype = self.cholesky[0].dtype
        solved = linalg.cho_solve(self.cholesky, np.column_stack([rhs, V]).astype(dtype),
                                  check_finite=False).astype(float)
        z, Y = solved[:, 0], solved[:, 1:]  # M0^-1 rhs, M0^-1 V
        capacitance = np.diag(1.0 / S) + V.T @ Y
        return z - Y @ np.linalg.solve(capacitance, V.T @ z)
