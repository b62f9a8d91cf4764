"""Ridge regression MOS predictor (the default), its penalty chosen by leave-one-out error."""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from ..config import DEFAULTS
from ..errors import ConfigError
from ..features.rows import GrowingRows
from ..features.standardise import Standardiser, working_dtype
from ..registry import check_int
from .base import Images
from .knn import KNNPredictor
from .prior import QualityPrior, resolve_prior
from .ridge_dual import DualSystem
from .ridge_solvers import NormalMatrix, best_alpha, gram_eigen, loo_residuals, matched_rows

PRIOR_MODES = ("mean", "feature")
#: Changed rows, as a fraction of the labels, that a warm fit absorbs before a full one
#: standardises and chooses the penalty again.
REFRESH_FRACTION = 0.05
#: Labels, as a fraction of the regression's columns, from which a fit beyond ``max_exact`` solves
#: and keeps the d x d normal matrix instead of the n x n dual system: where the two cost the same
#: to build (n d^2 + d^3 / 3 against n^2 d + n^3 / 3) and to keep (docs/performance.md).
PRIMAL_FROM = 1.0
#: Penalty per label (per unit of label weight) below which a fit beyond ``max_exact`` sums and
#: solves in float64: the system is then nearly singular but for the penalty, and float32 rounding
#: of its matrix would reach the solution (real features choose 1-3: docs/performance.md).
FLOAT32_MIN_PENALTY = 0.1


@dataclass
class RidgeWarmState:
    """What a fit beyond ``max_exact`` leaves for the next one: its rows (as given, as the
    regression sees them: kept for the normal matrix only, and standardised), their ids and
    weights, the system it solved (``system``, which the next fit takes over and changes in
    place: ``token`` tells whether it still belongs to this state), and the parts the last full
    fit chose (standardisation, penalty, the confidence's label spacing, leave-one-out residuals by
    row id), with the number of rows changed since."""

    params: dict[str, Any]
    ids: list[Hashable]
    X: np.ndarray
    rows: GrowingRows | None
    standardised: GrowingRows  # the confidence index's rows (``neighbours``) and their squared norms
    norms: GrowingRows
    weights: np.ndarray
    system: NormalMatrix | DualSystem
    scaler: Standardiser
    alpha: float
    neighbours: KNNPredictor
    loo: dict[Hashable, float]
    changed: int
    token: object = None

    def claim(self) -> RidgeWarmState:
        """Make this state the owner of its system."""
        self.token = self.system.token = object()
        return self


class RidgePredictor(RegressorMixin, BaseEstimator):
    """Ridge regression on standardised features, its penalty chosen by leave-one-out error.

    With tens to hundreds of labels and thousands of feature dimensions, a linear model with a
    well-chosen penalty generalises much better than nearest neighbours (every dimension
    contributes a little, instead of a distance dominated by irrelevant ones). The leave-one-out
    error of every candidate penalty comes in closed form from one eigendecomposition of the
    labels' Gram matrix (n x n: cheap while n is small). Beyond ``max_exact`` labels the penalty
    is chosen the same way on a seeded sample of ``max_exact`` of them (the best penalty depends
    on noise and signal strength, not on n) and the model is solved on all labels by Cholesky:
    of the n x n dual system (``ridge_dual.DualSystem``) with fewer labels than feature dimensions
    (``PRIMAL_FROM``), of the d x d normal matrix (``NormalMatrix``) from there on, the cheaper of
    the two. A full fit given a previous fit's ``warm_state_`` updates its normal matrix
    with the rows that changed instead of recomputing it. A fit given such a fit's ``warm_state_``
    after few changes (at most ``REFRESH_FRACTION`` of the labels since the last full fit) keeps
    that fit's standardisation and penalty (they hardly move with 5 % more labels) and solves
    exactly for them, growing the kept dual factor by the new rows or correcting the kept normal
    matrix's factor for the changed rows: that is what keeps a retrain after one more label fast
    at thousands of labels; the next full fit chooses both again.

    ``prior`` (see ``prior.resolve_prior``; default ``MOS_PRIOR``) brings what another rated
    dataset taught: as a weighted feature (``prior_mode="feature"``, what measured best on both
    dev sets: docs/experiments.md), each of its kind priors one more (weighted by the copies its file names), or
    as the mean the ridge shrinks towards (``"mean"``: the labels fit ``a + b * prior`` and the
    ridge learns the rest; kind priors unused). Either way the project's own labels decide how
    much it counts.

    ``loo_residuals_`` (label minus its prediction by the fit without it, closed form, for the
    labelled rows ``loo_rows_``: all of them, or the penalty's sample beyond ``max_exact``) say how
    well the model predicts ratings it has not seen: the backend reports them per retrain.

    ``sample_weight`` weighs each label's squared error (and its leave-one-out error in the
    penalty's choice): a MOS of several raters is surer than one rating (``ratings.weights``:
    1 is one rating's worth, so that a retrain after one more rating changes only that image's
    weight and the normal matrix is updated, not rebuilt). All equal is the plain fit.
    """

    warm_state_: RidgeWarmState | None = None

    def __init__(self, alphas: tuple[float, ...] = tuple(np.logspace(-1, 6, 36)), max_exact: int = 1000,
                 prior: str = DEFAULTS.prior, prior_mode: str = "feature") -> None:
        self.alphas = alphas
        self.max_exact = max_exact
        self.prior = prior
        self.prior_mode = prior_mode

    def check_params(self) -> RidgePredictor:
        alphas = np.asarray(self.alphas, dtype=float).ravel()
        if alphas.size == 0 or np.any(alphas <= 0):
            raise ConfigError(f"alphas must be positive numbers, got {self.alphas!r}")
        check_int("max_exact", self.max_exact, 3)
        if self.prior_mode not in PRIOR_MODES:
            raise ConfigError(f"prior_mode must be one of {', '.join(PRIOR_MODES)}, got {self.prior_mode!r}")
        resolve_prior(self.prior)  # a missing or broken file fails here
        return self

    def _with_prior(self, X: np.ndarray, prior: QualityPrior | None) -> tuple[np.ndarray, np.ndarray | None]:
        """``X`` as the regression sees it, and ``prior``'s prediction (None without a prior).
        As a feature, the prior and each of its kind priors are one more column each, weighted
        by the scaler (``_prior_weights``)."""
        if prior is None:
            return X, None
        if self.prior_mode == "mean":
            return X, prior.predict(X)
        columns = prior.columns(X)
        return np.hstack([X, columns.astype(X.dtype)]), columns[:, 0]

    def _prior_weights(self, n_columns: int, prior: QualityPrior | None) -> dict[int, float] | None:
        """The scaler's weights of the prior's columns, the last of the ``n_columns`` (feature mode)."""
        if prior is None or self.prior_mode != "feature":
            return None
        first = n_columns - 1 - len(prior.kinds)
        kind = float(np.sqrt(prior.kind_copies))
        return {first: float(np.sqrt(prior.copies)), **{first + 1 + i: kind for i in range(len(prior.kinds))}}

    def fit(self, X: np.ndarray, y: np.ndarray, *, images: Images = None,
            row_ids: Sequence[Hashable] | None = None, warm_state: Any = None,
            sample_weight: np.ndarray | None = None) -> RidgePredictor:
        """``row_ids`` name the rows (task ids; default: their positions) so that ``warm_state``,
        an earlier fit's ``warm_state_``, can be updated with the rows that changed; this fit
        takes it over (its system is updated in place). ``images`` is not used. This fit
        keeps a reference to ``X``: do not modify it afterwards."""
        self.check_params()
        alphas = np.asarray(self.alphas, dtype=float).ravel()
        X, y = validate_data(self, X, y, y_numeric=True)
        y = y.astype(float)
        ids: list[Hashable] = list(range(len(y))) if row_ids is None else list(row_ids)
        if len(ids) != len(y):
            raise ConfigError(f"fit got {len(y)} feature rows but {len(ids)} row_ids")
        w = _weights(sample_weight, len(y))
        self.n_labels_ = len(y)
        self.label_mean_ = float(np.average(y, weights=w))
        self.y_range_ = float(np.ptp(y))
        self.warm_state_ = None
        warm = warm_state if isinstance(warm_state, RidgeWarmState) and self._can_continue(warm_state, X) else None
        if warm is not None:
            same_new, same_old, added, removed = _changes(warm, X, ids, np.ones(len(y)) if w is None else w)
            if warm.changed + max(len(added), len(removed)) <= REFRESH_FRACTION * self.n_labels_:
                return self._fit_warm(warm, X, y, ids, w, (same_new, same_old, added, removed))
        raw = X
        prior_model = resolve_prior(self.prior, X.shape[1])
        X, prior = self._with_prior(X, prior_model)
        self.prior_scale_, self.prior_offset_ = 0.0, 0.0
        if prior is not None and self.prior_mode == "mean":
            self.prior_scale_, self.prior_offset_ = _calibrate(prior, y, w)
            y = y - (self.prior_offset_ + self.prior_scale_ * prior)  # ridge learns what the prior misses
        self.scaler_ = Standardiser(weights=self._prior_weights(X.shape[1], prior_model))
        kind = self._system_kind(self.n_labels_, X.shape[1])
        # X in the standardisation the confidence index shares (centred on the plain mean); written
        # where warm refits can append to it when this fit keeps a system for them
        standardised = GrowingRows.empty(len(X), X.shape[1:], working_dtype(X)) if kind else None
        Xs = self.scaler_.fit_transform(X, out=None if standardised is None else standardised.array)
        self.neighbours_ = KNNPredictor().fit_standardised(Xs, y, self.scaler_)  # for the confidence only
        y_mean = float(np.average(y, weights=w))
        yc = y - y_mean
        if w is not None and kind is not DualSystem:  # weighted: centre on the weighted means, scale rows by sqrt(w)
            raw_mean = _row_mean(X, w)  # from the features as given, not from float32 Xs: exact
            x_mean = (raw_mean - self.scaler_.mean_) / self.scaler_.scale_
            root = np.sqrt(w)
        if self.n_labels_ <= self.max_exact:
            A, b = (Xs, yc) if w is None else ((Xs - x_mean) * root[:, None].astype(Xs.dtype), yc * root)
            share = None if w is None else w / w.sum()
            U, eig = gram_eigen(A)
            Uy = U.T @ b
            self.alpha_ = best_alpha(U, eig, Uy, b, alphas, share)
            self.loo_rows_: np.ndarray = np.arange(self.n_labels_)
            self.loo_residuals_ = loo_residuals(U, eig, Uy, b, self.alpha_, share) / (1.0 if w is None else root)
            self.coef_ = A.T.astype(float) @ (U @ (Uy / (eig + self.alpha_)))  # primal from dual
        else:
            rows = np.sort(np.random.default_rng(0).permutation(self.n_labels_)[: self.max_exact])
            ws = np.ones(len(rows)) if w is None else w[rows]
            sample = Xs[rows] - np.average(Xs[rows], axis=0, weights=ws)
            ys = yc[rows] - np.average(yc[rows], weights=ws)
            if w is not None:
                sample *= np.sqrt(ws)[:, None].astype(sample.dtype)
                ys = ys * np.sqrt(ws)
            share = None if w is None else ws / ws.sum()
            U, eig = gram_eigen(sample, np.float32)
            self.alpha_ = best_alpha(U, eig, U.T @ ys, ys, alphas, share)
            self.loo_rows_ = rows
            self.loo_residuals_ = loo_residuals(U, eig, U.T @ ys, ys, self.alpha_, share) / np.sqrt(ws)
            precise = self.alpha_ < FLOAT32_MIN_PENALTY * (self.n_labels_ if w is None else w.sum())
            assert standardised is not None  # made for every fit beyond max_exact
            norms = GrowingRows(self.neighbours_.sq_norms_)
            self.neighbours_ = self.neighbours_.with_rows(standardised.array, norms.array, self.neighbours_.y_)
            previous = warm_state.system if isinstance(warm_state, RidgeWarmState) else None
            kept = None
            if kind is DualSystem:  # its intercept is solved with it: no weighted means
                spare = previous if isinstance(previous, DualSystem) else None
                dual = DualSystem(standardised, ids, np.ones(self.n_labels_) if w is None else w, self.alpha_,
                                  precise, spare)
                self.coef_, self.y_mean_ = dual.solve(y)
                system: NormalMatrix | DualSystem = dual
            else:
                normal = previous if isinstance(previous, NormalMatrix) else None
                if normal is None or normal.precise != precise or not normal.update(X, ids, w):
                    normal = NormalMatrix(X, ids, w, precise)
                target = yc if w is None else yc * w
                rhs = _transposed_product(X, target, precise) / self.scaler_.scale_  # Xs^T W yc
                mean = self.scaler_.mean_ if w is None else raw_mean
                self.coef_ = normal.solve(mean, self.scaler_.scale_, rhs, self.alpha_)
                kept = GrowingRows(X)
                normal.rows, system = kept.array, normal
                self.y_mean_ = _intercept(y_mean, None if w is None else x_mean, self.coef_)
            self.warm_state_ = RidgeWarmState(
                self.get_params(), ids, raw, kept, standardised, norms, system.weights, system, self.scaler_,
                self.alpha_, self.neighbours_,
                {ids[r]: float(v) for r, v in zip(rows, self.loo_residuals_, strict=True)}, 0).claim()
            return self
        self.y_mean_ = _intercept(y_mean, None if w is None else x_mean, self.coef_)
        return self

    def _system_kind(self, n: int, d: int) -> type[NormalMatrix] | type[DualSystem] | None:
        """The system a fit on ``n`` rows of ``d`` regression columns solves and keeps for warm
        refits: none up to ``max_exact`` rows (the exact path), then the cheaper one (``PRIMAL_FROM``)."""
        if n <= self.max_exact:
            return None
        return NormalMatrix if n >= PRIMAL_FROM * d else DualSystem

    def _can_continue(self, warm: RidgeWarmState, X: np.ndarray) -> bool:
        """Whether ``warm`` came from a fit like this one, on rows like these, whose system is the
        one a fit on these rows keeps (``_system_kind``) and still its own (a fit that failed or
        was lost after changing it took it: then a full fit)."""
        mine, theirs = self.get_params(), warm.params
        return (mine.keys() == theirs.keys() and np.array_equal(np.asarray(mine["alphas"], dtype=float),
                                                                 np.asarray(theirs["alphas"], dtype=float))
                and all(mine[k] == theirs[k] for k in mine if k != "alphas")
                and X.shape[1] == warm.X.shape[1] and X.dtype == warm.X.dtype
                and isinstance(warm.system, self._system_kind(len(X), warm.standardised.array.shape[1]) or ())
                and warm.system.token is warm.token)

    def _fit_warm(self, warm: RidgeWarmState, X: np.ndarray, y: np.ndarray, ids: list[Hashable],
                  w: np.ndarray | None, matched: tuple[np.ndarray, ...]) -> RidgePredictor:
        """The fit for few changed rows: ``warm``'s standardisation and penalty, an exact solve
        for them (see the class docstring). Unchanged rows are copied from ``warm``, only the
        changed ones transformed."""
        same_new, same_old, added, removed = matched
        n = len(y)
        appending = len(removed) == 0 and len(same_new) == len(warm.ids) and np.array_equal(same_new, same_old)
        prior = resolve_prior(self.prior, X.shape[1])
        new_rows = self._with_prior(X[added], prior)[0]
        new_standardised = warm.scaler.transform(new_rows)
        new_norms = np.einsum("ij,ij->i", new_standardised, new_standardised, dtype=np.float64)

        def grown(old: GrowingRows, new: np.ndarray) -> GrowingRows:
            if appending:  # the old rows stay where the serving model reads them
                return old.appended(new)
            merged = np.empty((n, *old.array.shape[1:]), dtype=old.array.dtype)
            merged[same_new] = old.array[same_old]
            merged[added] = new
            return GrowingRows(merged)

        standardised, norms = grown(warm.standardised, new_standardised), grown(warm.norms, new_norms)
        self.prior_scale_, self.prior_offset_ = 0.0, 0.0
        if prior is not None and self.prior_mode == "mean":
            p = prior.predict(X)
            self.prior_scale_, self.prior_offset_ = _calibrate(p, y, w)
            y = y - (self.prior_offset_ + self.prior_scale_ * p)
        self.scaler_, self.alpha_ = warm.scaler, warm.alpha
        self.neighbours_ = warm.neighbours.with_rows(standardised.array, norms.array, y)
        weights = np.ones(n) if w is None else w
        kept_rows = None
        if isinstance(warm.system, DualSystem):
            warm.system.apply(standardised, ids, weights, added, removed, same_new, same_old, appending)
            self.coef_, self.y_mean_ = warm.system.solve(y)
        else:
            assert warm.rows is not None  # kept with every normal matrix
            kept_rows = grown(warm.rows, new_rows)
            rows = kept_rows.array
            warm.system.apply(rows, ids, weights, added, removed)
            y_mean = float(np.average(y, weights=w))
            target = (y - y_mean) * weights
            rhs = _transposed_product(rows, target, warm.system.precise) / self.scaler_.scale_  # Xs^T W yc
            mean = _row_mean(rows, w)
            self.coef_ = warm.system.solve(mean, self.scaler_.scale_, rhs, self.alpha_)
            self.y_mean_ = _intercept(y_mean, (mean - self.scaler_.mean_) / self.scaler_.scale_, self.coef_)
        position = {row_id: i for i, row_id in enumerate(ids)}
        kept = [(position[row_id], value) for row_id, value in warm.loo.items() if row_id in position]
        self.loo_rows_ = np.array([i for i, _ in kept], dtype=int)
        self.loo_residuals_ = np.array([v for _, v in kept], dtype=float)
        self.warm_state_ = RidgeWarmState(warm.params, ids, X, kept_rows, standardised, norms, weights, warm.system,
                                          warm.scaler, warm.alpha, self.neighbours_, warm.loo,
                                          warm.changed + max(len(added), len(removed))).claim()
        return self

    def _offset(self, prior: np.ndarray | None) -> np.ndarray | float:
        return 0.0 if prior is None else self.prior_offset_ + self.prior_scale_ * prior

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions, and ``X`` as the regression sees it."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, reset=False)
        X, prior = self._with_prior(X, resolve_prior(self.prior, X.shape[1]))
        return self.scaler_.transform(X) @ self.coef_ + self.y_mean_ + self._offset(prior), X

    def predict(self, X: np.ndarray, *, images: Images = None) -> np.ndarray:
        return self._predict(X)[0]

    def predict_with_confidence(self, X: np.ndarray, *, images: Images = None) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and a confidence in [0, 1]; low = worth labelling next.

        ``confidence = (neighbours + decisiveness) / 2``, both measured on the evaluation data:
        ``neighbours`` is the KNN confidence (close to labelled images whose ratings agree), and
        ``decisiveness = |prediction - mean label| / (label range / 2)``, clipped to 1, because
        ridge pulls the images it knows least about towards the mean rating. Each alone ranked
        the errors a little, together slightly better. It is a weak signal: docs/evaluation.md.
        """
        predictions, X = self._predict(X)
        _, neighbours = self.neighbours_.predict_with_confidence(X)
        half_range = self.y_range_ / 2
        decisiveness = (
            np.clip(np.abs(predictions - self.label_mean_) / half_range, 0.0, 1.0)
            if half_range > 0 else np.zeros(len(predictions))
        )
        return predictions, (neighbours + decisiveness) / 2


def _changes(warm: RidgeWarmState, X: np.ndarray, ids: list[Hashable],
             weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """``matched_rows`` against ``warm``'s rows; without comparing them when ``X`` starts with
    the very rows (same memory: ``GrowingRows``) and ids that ``warm`` was fitted on."""
    length = len(warm.ids)
    head = X[:length]
    if (len(X) >= length and head.__array_interface__["data"] == warm.X.__array_interface__["data"]
            and head.shape == warm.X.shape and head.strides == warm.X.strides and ids[:length] == warm.ids
            and np.array_equal(weights[:length], warm.weights)):
        kept = np.arange(length)
        return kept, kept, np.arange(length, len(X)), np.empty(0, dtype=int)
    return matched_rows(warm.X, warm.ids, warm.weights, X, ids, weights)


def _intercept(y_mean: float, x_mean: np.ndarray | None, coef: np.ndarray) -> float:
    """The intercept where the standardised features are 0 (their plain mean), for a fit centred
    on the labels' mean ``y_mean`` and the standardised rows' mean ``x_mean`` (None: 0)."""
    return y_mean if x_mean is None else y_mean - float(x_mean @ coef)


def _row_mean(X: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """The rows' (weighted) mean, summed in float64."""
    if w is None:
        return X.mean(axis=0, dtype=np.float64)
    return np.einsum("i,ij->j", w / w.sum(), X, dtype=np.float64)


def _transposed_product(X: np.ndarray, v: np.ndarray, precise: bool) -> np.ndarray:
    """``X^T v`` in float64: summed in ``X``'s own dtype (float32: one fast BLAS pass), or in
    float64 when ``precise``."""
    if precise:
        return np.einsum("ij,i->j", X, v, dtype=np.float64)
    return (X.T @ v.astype(X.dtype)).astype(float)


def _weights(sample_weight: np.ndarray | None, n: int) -> np.ndarray | None:
    """The weights; None (the plain fit: the penalty's choice absorbs a common factor) when
    absent or all equal."""
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=float).ravel()
    if len(w) != n or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise ConfigError(f"sample_weight must be {n} positive numbers")
    return None if np.ptp(w) == 0 else w


def _calibrate(prior: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    """(scale, offset) mapping the prior onto the labels' scale by (weighted) least squares; no
    prior (0, 0) below 3 labels or when the labels do not rise with it."""
    if len(y) < 3 or np.ptp(prior) == 0:
        return 0.0, 0.0
    scale, offset = np.polyfit(prior, y, 1, w=None if w is None else np.sqrt(w))
    return (float(scale), float(offset)) if scale > 0 else (0.0, 0.0)
