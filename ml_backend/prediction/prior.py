"""A quality prior: a linear MOS predictor trained on another dataset, shipped as a small file.

With few labels, ridge has little to go on; a prior trained on thousands of rated photos already
ranks images by quality. The ridge predictor can use it as its prior mean (shrink towards the
prior, recalibrated to the user's scale by the labels, instead of towards a constant) or as one
more, weighted, feature. The file holds the standardisation and the weights of a ridge fit, and
the feature layout it expects; optionally also one ridge per kind of photo in the training set
(BIQ2021's gallery, faulty-capture and Unsplash photos each rank a new folder differently, and its
labels can weigh them: docs/experiments.md, round 22).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

#: Priors that ship with the package (``priors/<name>.npz``), one per EfficientNet backbone: "auto" is
#: the one that fits the features (the default backbone's, the first, without them).
BUNDLED = ("biq2021", "biq2021-lite012")
NO_PRIOR = ("", "none")
#: Fewest images of one kind that ``fit_prior`` fits a kind prior to.
MIN_KIND_IMAGES = 10
#: Among EfficientNet-Lite0's 4,025 feature columns the prior's prediction, appended as one more
#: standardised column, counts as 121 copies of itself (as the sharpness value does) and each kind
#: prior's as 40, so that three equal kind columns weigh about as the prior's one, as measured
#: (docs/experiments.md, round 22). ``copies_for`` scales both with the feature columns, so that the
#: priors keep their share of the ridge's penalty on other layouts (round 25).
PRIOR_COPIES, KIND_PRIOR_COPIES, REFERENCE_COLUMNS = 121, 40, 4025


def copies_for(n_features: int) -> tuple[int, int]:
    """The prior's and each kind prior's copies among ``n_features`` columns (121 and 40 at 4,025)."""
    scale = n_features / REFERENCE_COLUMNS
    return max(1, round(PRIOR_COPIES * scale)), max(1, round(KIND_PRIOR_COPIES * scale))


@dataclass(frozen=True)
class QualityPrior:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    #: The features it was trained on (``FeatureExtractor.namespace``) and on which data.
    features: str
    trained_on: str
    #: The kind priors' names, and the kind priors as affine maps of the features as given:
    #: ``X @ kind_weights + kind_offsets``, one column per kind ([n_features, k] and [k]).
    kinds: tuple[str, ...] = ()
    kind_weights: np.ndarray | None = None
    kind_offsets: np.ndarray | None = None
    #: How many copies of itself the prior's column, and each kind prior's, count as beside the
    #: features (``copies_for``): the ridge weighs them by the square roots.
    copies: int = PRIOR_COPIES
    kind_copies: int = KIND_PRIOR_COPIES

    def columns(self, X: np.ndarray, kinds: bool = True) -> np.ndarray:
        """[n, 1 + len(kinds)]: the prediction ``((X - mean) / scale) @ coef + intercept``, then
        each kind prior's (none with ``kinds=False``); one product with ``X`` in its own dtype."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != len(self.coef):
            raise ConfigError(f"the quality prior expects {len(self.coef)} features ({self.features}), got "
                              f"{X.shape[-1]}")
        weights, offset = _folded(self.mean, self.scale, self.coef, self.intercept)
        weights, offsets = weights[:, None], np.array([offset])
        if kinds and self.kinds:
            assert self.kind_weights is not None and self.kind_offsets is not None
            weights = np.hstack([weights, self.kind_weights])
            offsets = np.concatenate([offsets, self.kind_offsets])
        return (X @ weights.astype(X.dtype)).astype(np.float64) + offsets

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The prior's prediction alone (``columns``' first, the kind priors not computed)."""
        return self.columns(X, kinds=False)[:, 0]

    def save(self, path: Path) -> None:
        kinds: dict[str, Any] = {} if not self.kinds else {
            "kinds": np.array(self.kinds, dtype=np.str_), "kind_weights": np.asarray(self.kind_weights, np.float32),
            "kind_offsets": np.asarray(self.kind_offsets, np.float64)}
        with open(path, "wb") as handle:  # a handle: savez would add ".npz" to another name
            np.savez_compressed(handle, mean=self.mean.astype(np.float32), scale=self.scale.astype(np.float32),
                                coef=self.coef.astype(np.float32), intercept=np.float64(self.intercept),
                                features=np.str_(self.features), trained_on=np.str_(self.trained_on),
                                copies=np.int64(self.copies), kind_copies=np.int64(self.kind_copies), **kinds)


def _folded(mean: np.ndarray, scale: np.ndarray, coef: np.ndarray, intercept: float) -> tuple[np.ndarray, float]:
    """A ridge's ``((X - mean) / scale) @ coef + intercept`` as ``X @ weights + offset``: one
    product with ``X``, no standardised copy of it (thousands of rows at every refit)."""
    weights = coef / scale
    return weights, float(intercept - mean @ weights)


@functools.lru_cache(maxsize=8)
def load_prior(path: str) -> QualityPrior:
    """The prior stored at ``path`` (cached: every refit uses it); ConfigError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            coef = data["coef"].astype(np.float64)
            kinds: tuple[str, ...] = tuple(str(k) for k in data["kinds"]) if "kinds" in data.files else ()
            kind_weights = kind_offsets = None
            if kinds:
                kind_weights, kind_offsets = data["kind_weights"].astype(np.float64), data["kind_offsets"].astype(float)
                if kind_weights.shape != (len(coef), len(kinds)) or kind_offsets.shape != (len(kinds),):
                    raise ValueError(f"its kind priors do not match its {len(coef)} features and {len(kinds)} kinds")
            copies = (int(data["copies"]), int(data["kind_copies"])) if "copies" in data.files else (
                PRIOR_COPIES, KIND_PRIOR_COPIES)  # files from before round 25: Lite0's
            if min(copies) < 1:
                raise ValueError(f"its copies must be at least 1, got {copies}")
            return QualityPrior(data["mean"].astype(np.float64), data["scale"].astype(np.float64), coef,
                                float(data["intercept"]), str(data["features"]), str(data["trained_on"]),
                                kinds, kind_weights, kind_offsets, *copies)
    except FileNotFoundError:
        raise ConfigError(f"quality prior file not found: {path}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:  # TypeError: an array where a number belongs
        raise ConfigError(f"quality prior file {path} cannot be used: {exc}") from None


def resolve_prior(spec: str, n_features: int | None = None) -> QualityPrior | None:
    """The prior ``spec`` names: none (``""``, "none"), a bundled name, a file path, or "auto",
    the bundled prior that fits ``n_features`` features (other backbones get no prior)."""
    if spec in NO_PRIOR:
        return None
    if spec == "auto":
        priors = (load_prior(_bundled_path(name)) for name in BUNDLED)  # lazily: none after the one that fits is read
        return next((p for p in priors if n_features in (None, len(p.coef))), None)
    return load_prior(_bundled_path(spec) if spec in BUNDLED else spec)


def _bundled_path(name: str) -> str:
    return str(files("ml_backend.prediction") / "priors" / f"{name}.npz")


def fit_prior(X: np.ndarray, y: np.ndarray, features: str, trained_on: str,
              kinds: Sequence[str | None] | None = None,
              copies: tuple[int, int] = (PRIOR_COPIES, KIND_PRIOR_COPIES)) -> QualityPrior:
    """A ridge fit on ``X``, ``y`` (penalty by leave-one-out, as the predictor chooses it); with
    ``kinds`` (each row's kind of photo, None for none), also one such fit per kind on its rows.
    ``copies``: what its columns will count as beside the features (``copies_for``)."""
    from .ridge import RidgePredictor

    def ridge(rows: np.ndarray | slice) -> RidgePredictor:
        return RidgePredictor(prior="none").fit(X[rows], y[rows])  # a prior of its own would be learnt into it

    model = ridge(slice(None))
    prior = QualityPrior(model.scaler_.mean_, model.scaler_.scale_, model.coef_, model.y_mean_, features, trained_on,
                         copies=copies[0], kind_copies=copies[1])
    if kinds is None:
        return prior
    if len(kinds) != len(y):
        raise ConfigError(f"fit_prior got {len(y)} labels but {len(kinds)} kinds")
    names = sorted({kind for kind in kinds if kind is not None})
    if len(names) < 2:
        raise ConfigError(f"kind priors need at least 2 kinds of photo, got {len(names)}: {names}")
    weights, offsets = [], []
    for name in names:
        rows = np.array([kind == name for kind in kinds])
        if rows.sum() < MIN_KIND_IMAGES:
            raise ConfigError(f"kind {name!r} has {rows.sum()} images: a kind prior needs at least {MIN_KIND_IMAGES}")
        fit = ridge(rows)
        kind_weights, kind_offset = _folded(fit.scaler_.mean_, fit.scaler_.scale_, fit.coef_, fit.y_mean_)
        weights.append(kind_weights)
        offsets.append(kind_offset)
    return replace(prior, kinds=tuple(names), kind_weights=np.column_stack(weights), kind_offsets=np.array(offsets))
