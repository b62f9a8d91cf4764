"""DualSystem: the dual ridge system a fit keeps below half as many labels as columns, and how it
recovers when float32 is not enough."""
from __future__ import annotations

import numpy as np
import pytest

from ml_backend.features.rows import GrowingRows
from ml_backend.prediction.ridge_dual import DualSystem


def low_rank_rows(n: int, d: int = 200, rank: int = 10, seed: int = 0) -> np.ndarray:
    """Centred float32 rows spanning few directions, like a CNN's: S S^T is singular but for the penalty."""
    rng = np.random.default_rng(seed)
    S = (rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))).astype(np.float32)
    return S - S.mean(axis=0)


def reference(S: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Weighted ridge with an unpenalised intercept, in float64 from the normal equations."""
    A = np.hstack([S.astype(float), np.ones((len(S), 1))])
    penalty = alpha * np.eye(A.shape[1])
    penalty[-1, -1] = 0.0
    solution = np.linalg.solve(A.T @ (w[:, None] * A) + penalty, A.T @ (w * y))
    return solution[:-1], float(solution[-1])


def solved(system: DualSystem, S: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> None:
    coef, intercept = system.solve(y)
    expected, expected_intercept = reference(S, y, w, alpha)
    np.testing.assert_allclose(S.astype(float) @ coef + intercept, S.astype(float) @ expected + expected_intercept,
                               atol=1e-3 * np.std(y))


@pytest.mark.parametrize("alpha", [0.01, 1e-4])  # float32: a solve that misses; a failed factorization
def test_float32_that_fails_gives_way_to_float64(alpha: float) -> None:
    S = low_rank_rows(60)
    y = np.random.default_rng(1).normal(50, 10, 60)
    w = np.ones(60)
    system = DualSystem(GrowingRows(S), list(range(60)), w, alpha, precise=False)
    solved(system, S, y, w, alpha)
    assert system.precise


def test_a_new_row_whose_pivot_is_lost_refactorizes_the_rows() -> None:
    """A factor drifted by rounding (here made to, 1 %) can make a new row's Cholesky pivot
    negative; the system then factorizes its rows again, in float64, and solves them right."""
    S = low_rank_rows(41, rank=40)
    S[40] = S[3]  # the new row repeats one: its pivot is the penalty alone
    y = np.random.default_rng(2).normal(50, 10, 41)
    w = np.ones(41)
    rows = GrowingRows(S[:40])
    system = DualSystem(rows, list(range(40)), w[:40], 1.0, precise=False)
    system._packed[:] *= 0.99
    kept = np.arange(40)
    system.apply(rows.appended(S[40:]), list(range(41)), w, np.array([40]), np.empty(0, dtype=int), kept, kept,
                 appending=True)
    assert system.precise and system.n == 41 and not system.retired
    solved(system, S, y, w, 1.0)
