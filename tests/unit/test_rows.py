"""GrowingRows: the labelled rows a serving model reads while the next fit appends."""
from __future__ import annotations

import numpy as np

from ml_backend.features.rows import GrowingRows
from ml_backend.prediction.ridge import RidgePredictor
from tests.unit.test_predictors import frozen_ridge, linear_data


def test_appending_keeps_every_earlier_view_and_copies_only_when_it_must() -> None:
    first = GrowingRows(np.arange(6, dtype=np.float32).reshape(3, 2))
    second = first.appended(np.full((2, 2), 9, dtype=np.float32))
    assert np.shares_memory(first.array, second.array)  # in place: the buffer had room
    np.testing.assert_array_equal(first.array, np.arange(6).reshape(3, 2))
    np.testing.assert_array_equal(second.array[3:], np.full((2, 2), 9))
    # The shorter view may not write where the longer one reads: it gets a copy.
    branch = first.appended(np.zeros((1, 2), dtype=np.float32))
    assert not np.shares_memory(branch.array, second.array)
    np.testing.assert_array_equal(second.array[3:], np.full((2, 2), 9))
    np.testing.assert_array_equal(branch.array, np.vstack([np.arange(6).reshape(3, 2), np.zeros((1, 2))]))
    # Past the spare capacity: a new, larger buffer with the same rows.
    big = second.appended(np.ones((100, 2), dtype=np.float32))
    assert len(big) == 105 and not np.shares_memory(big.array, second.array)
    np.testing.assert_array_equal(big.array[:5], second.array)


def test_a_warm_fit_on_appended_rows_skips_the_comparison_and_leaves_the_old_model_alone() -> None:
    """The backend passes its labelled rows as a GrowingRows view: the next fit appends to the
    same buffer; the model that still serves must predict exactly as before."""
    X, y = linear_data(660, d=40, seed=2)
    ids = list(range(660))
    rows = GrowingRows(X[:600])
    full = RidgePredictor(max_exact=50).fit(rows.array, y[:600], row_ids=ids[:600])
    model, served = full, full.predict(X)
    for n in range(601, 611):
        rows = rows.appended(X[n - 1 : n])
        previous = model
        model = RidgePredictor(max_exact=50).fit(rows.array, y[:n], row_ids=ids[:n], warm_state=model.warm_state_)
        assert np.shares_memory(model.neighbours_.Xs_, previous.neighbours_.Xs_)  # appended, not copied
        np.testing.assert_allclose(model.coef_, frozen_ridge(full, X[:n], y[:n]).coef_, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(full.predict(X), served)
    _, confidence = model.predict_with_confidence(X[600:610])
    assert np.all(confidence > 0)
