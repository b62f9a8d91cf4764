"""RidgePredictor's dual system, kept from fit to fit while there are fewer labels than columns.

Ridge with an unpenalised intercept on standardised rows ``S`` (n x d), label weights ``w`` and
penalty ``alpha`` is, in its dual form (cheaper than the d x d normal matrix while n < d),

    (S S^T + alpha W^-1) a + C nu = y,    C^T a = 0,    coefficients S^T a,  intercept nu[0],

with ``C`` the column of ones. Kept between fits, the system grows instead of being rebuilt: a new
label is one more row and column of ``M = S S^T + alpha W^-1``, whose Cholesky row costs one pass
over ``S`` and one triangular solve (O(n d + n^2), against O(n^2 d + n^3) for building it). A label
whose row changed (features or weight) or went away is *retired*: its slot stays in ``M`` and one
more column of ``C`` pins its dual variable to 0; a changed one comes back as a new slot.
``M^-1 C`` is kept and updated with each new slot, so a solve costs two triangular solves and a
system the size of ``C``'s columns.
"""
from __future__ import annotations

from collections.abc import Hashable

import numpy as np
from scipy.linalg import blas, lapack

from ..errors import ConfigError
from ..features.rows import GrowingRows, with_room

#: Rows per block when a product is summed in float64, to keep temporaries small.
BLOCK = 256


class _Refactor(Exception):
    """A new Cholesky row lost its positive pivot to rounding: factorize again."""


class DualSystem:
    """The system above for the rows a fit gave it (``GrowingRows``, in the standardisation the
    fit keeps), their ids and weights.

    The factor ``L`` of ``M`` is stored row by row (row i's i + 1 values from i(i+1)/2 on), which
    is ``L^T`` in the packed upper layout BLAS's ``tpsv`` solves with; the buffer has spare rows so
    that a new slot is written in place. ``M``'s products are summed and factorized in float32
    (twice as fast), or in float64 when ``precise`` (a tiny penalty): from the start, or from when
    a float32 factorization, solve or new row fails.

    ``token`` names the warm state it belongs to (``RidgeWarmState.claim``); changing it clears it,
    so a warm state whose fit was lost after changing it is not mistaken for the current one.
    """

    def __init__(self, rows: GrowingRows, ids: list[Hashable], weights: np.ndarray, alpha: float,
                 precise: bool, spare: DualSystem | None = None) -> None:
        """``spare``: an earlier system whose factor's memory this one takes over (fresh memory's
        page faults cost more than the factorization on the machines measured)."""
        self.alpha, self.precise = alpha, precise
        self.token: object = None
        self.n = 0
        self._packed: np.ndarray = np.empty(0)
        if spare is not None:  # its buffer, taken: that system is no warm state's any more
            self._packed, spare._packed, spare.token = spare._packed, np.empty(0), None
        self._factorize(rows, ids, np.asarray(weights, dtype=float))

    def _factorize(self, rows: GrowingRows, ids: list[Hashable], weights: np.ndarray) -> None:
        """A new factor for these rows alone (no retired slot); in float64 from now on when the
        float32 one fails."""
        n = len(rows)
        while True:
            dtype, syrk, potrf = (np.float64, blas.dsyrk, lapack.dpotrf) if self.precise else \
                (np.float32, blas.ssyrk, lapack.spotrf)
            At = np.asfortranarray(rows.array.T, dtype=dtype)  # d x n: S^T, as BLAS reads it
            M = syrk(1.0, At, trans=1, lower=1)  # S S^T, lower triangle
            M[np.diag_indices(n)] += self.alpha / weights
            factor, info = potrf(M, lower=1, overwrite_a=1, clean=0)
            if info == 0:
                break
            if self.precise:
                raise ConfigError(f"ridge penalty {self.alpha:g} is too small to solve for these features")
            self.precise = True
        self.n = 0
        self._reserve(n)
        for i in range(n):
            start = i * (i + 1) // 2
            self._packed[start : start + i + 1] = factor[i, : i + 1]
        self.n = n
        self.slots, self.shared = rows, True  # the slots are the current rows themselves
        self.slot_weights = weights.copy()
        self.current, self.weights, self.ids = rows, weights, list(ids)
        self.active = np.arange(n)  # the slot of each current row
        self.retired: list[int] = []
        self.inverse_c = self._inverse(np.ones(n))[:, None]  # M^-1 C

    def _reserve(self, n: int) -> None:
        """Room in the packed buffer for ``n`` rows (spare capacity when it has to grow)."""
        if len(self._packed) < n * (n + 1) // 2:
            rows = with_room(n)
            grown = np.empty(rows * (rows + 1) // 2)
            filled = self.n * (self.n + 1) // 2
            grown[:filled] = self._packed[:filled]
            self._packed = grown

    def _inverse(self, v: np.ndarray) -> np.ndarray:
        """``M^-1 v`` for the first ``self.n`` slots: two triangular solves."""
        forward = blas.dtpsv(self.n, self._packed, np.asarray(v, dtype=float), lower=0, trans=1)
        return blas.dtpsv(self.n, self._packed, forward, lower=0, trans=0)

    def apply(self, current: GrowingRows, ids: list[Hashable], weights: np.ndarray, added: np.ndarray,
              removed: np.ndarray, same_new: np.ndarray, same_old: np.ndarray, appending: bool) -> None:
        """Follow the rows to ``current`` (the standardised rows now, with ``ids`` and ``weights``):
        ``removed`` old positions are retired, ``added`` new positions get new slots, the rows at
        ``same_new`` are those at ``same_old`` before. ``appending``: ``current`` is the old rows
        followed by the added ones, in the same buffer."""
        self.token = None
        weights = np.asarray(weights, dtype=float)
        active = np.empty(len(ids), dtype=int)
        active[same_new] = self.active[same_old]
        active[added] = self.n + np.arange(len(added))
        for slot in self.active[removed]:
            unit = np.zeros(self.n)
            unit[slot] = 1.0
            self.inverse_c = np.column_stack([self.inverse_c, self._inverse(unit)])
            self.retired.append(int(slot))
        new_rows = current.array[added]
        if appending and self.shared:
            self.slots = current
        else:
            self.slots, self.shared = self.slots.appended(new_rows), False
        self.slot_weights = np.concatenate([self.slot_weights, weights[added]])
        try:
            self._border(self._products(self.slots.array, new_rows))
        except _Refactor:
            self.precise = True
            self._factorize(current, ids, weights)
            return
        self.current, self.weights, self.ids, self.active = current, weights, list(ids), active

    def _products(self, rows: np.ndarray, new: np.ndarray) -> np.ndarray:
        """``rows @ new^T`` in float64: summed in float32 (one BLAS pass), or in float64 blocks
        when ``precise``."""
        if not self.precise:
            return (rows @ new.T).astype(float)
        return np.vstack([rows[start : start + BLOCK].astype(float) @ new.T.astype(float)
                          for start in range(0, len(rows), BLOCK)] or [np.empty((0, len(new)))])

    def _border(self, products: np.ndarray) -> None:
        """Add one slot per column of ``products`` (each new row's products with every slot's,
        itself and the other new rows' included) to the factor and to ``M^-1 C``."""
        for j in range(products.shape[1]):
            n = self.n
            k = products[:n, j]
            pivot = products[n, j] + self.alpha / self.slot_weights[n]
            row = blas.dtpsv(n, self._packed, k, lower=0, trans=1)  # L^-1 k
            schur = pivot - row @ row
            if not schur > 1e-12 * pivot:
                raise _Refactor
            toward = blas.dtpsv(n, self._packed, row, lower=0, trans=0)  # M^-1 k, with the old factor
            self._reserve(n + 1)
            start = n * (n + 1) // 2
            self._packed[start : start + n] = row
            self._packed[start + n] = np.sqrt(schur)
            carried = np.zeros(self.inverse_c.shape[1])
            carried[0] = 1.0  # C's new row: 1 in the intercept's column, 0 in the retired slots'
            t = (k @ self.inverse_c - carried) / schur
            self.inverse_c = np.vstack([self.inverse_c + np.outer(toward, t), -t])
            self.n = n + 1

    def solve(self, y: np.ndarray) -> tuple[np.ndarray, float]:
        """Coefficients and intercept for the labels ``y`` of the current rows; checked against the
        system itself (factorized again in float64 if float32 missed)."""
        solution = self._solution(y)
        if solution is None and not self.precise:
            self.precise = True
            self._factorize(self.current, self.ids, self.weights)
            solution = self._solution(y)
        if solution is None:
            raise ConfigError(f"ridge penalty {self.alpha:g} is too small to solve for these features")
        return solution

    def _solution(self, y: np.ndarray) -> tuple[np.ndarray, float] | None:
        """The solution, or None when it misses the system by more than 1e-3 of the labels' spread."""
        target = np.zeros(self.n)
        target[self.active] = y
        plain = self._inverse(target)
        Z, retired = self.inverse_c, self.retired
        try:  # C^T Z nu = C^T plain
            nu = np.linalg.solve(np.vstack([Z.sum(axis=0), Z[retired]]),
                                 np.concatenate([[plain.sum()], plain[retired]]))
        except np.linalg.LinAlgError:
            return None
        a = plain - Z @ nu
        S = self.slots.array
        if self.precise:
            coef = sum((a[start : start + BLOCK] @ S[start : start + BLOCK].astype(float)
                        for start in range(0, self.n, BLOCK)), np.zeros(S.shape[1]))
            fitted = self._products(S, coef[None, :])[:, 0]
        else:
            coef = (a.astype(np.float32) @ S).astype(float)
            fitted = (S @ coef.astype(np.float32)).astype(float)
        residual = fitted + self.alpha * a / self.slot_weights + nu[0] - target
        residual[retired] += nu[1:]
        spread = float(np.linalg.norm(y - np.average(y, weights=self.weights)))
        if not np.linalg.norm(residual) <= 1e-3 * max(spread, 1e-12):
            return None
        return coef, float(nu[0])
