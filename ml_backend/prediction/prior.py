"""A quality prior: a linear MOS predictor trained on another dataset, shipped as a small file.

With few labels, ridge has little to go on; a prior trained on thousands of rated photos already
ranks images by quality. The ridge predictor can use it as its prior mean (shrink towards the
prior, recalibrated to the user's scale by the labels, instead of towards a constant) or as one
more, weighted, feature. The file holds the standardisation and the weights of a ridge fit, and
the feature layout it expects.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from ..errors import ConfigError

#: Priors that ship with the package (``priors/<name>.npz``); "auto" is the first.
BUNDLED = ("biq2021",)
NO_PRIOR = ("", "none")


@dataclass(frozen=True)
class QualityPrior:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    #: The features it was trained on (``FeatureExtractor.namespace``) and on which data.
    features: str
    trained_on: str

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``((X - mean) / scale) @ coef + intercept`` as one product with ``X``'s own dtype: no
        standardised copy of ``X`` (thousands of rows at every refit)."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != len(self.coef):
            raise ConfigError(f"the quality prior expects {len(self.coef)} features ({self.features}), got "
                              f"{X.shape[-1]}")
        weights = self.coef / self.scale
        return (X @ weights.astype(X.dtype)).astype(np.float64) + (self.intercept - self.mean @ weights)

    def save(self, path: Path) -> None:
        with open(path, "wb") as handle:  # a handle: savez would add ".npz" to another name
            np.savez_compressed(handle, mean=self.mean.astype(np.float32), scale=self.scale.astype(np.float32),
                                coef=self.coef.astype(np.float32), intercept=np.float64(self.intercept),
                                features=np.str_(self.features), trained_on=np.str_(self.trained_on))


@functools.lru_cache(maxsize=8)
def load_prior(path: str) -> QualityPrior:
    """The prior stored at ``path`` (cached: every refit uses it); ConfigError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return QualityPrior(data["mean"].astype(np.float64), data["scale"].astype(np.float64),
                                data["coef"].astype(np.float64), float(data["intercept"]),
                                str(data["features"]), str(data["trained_on"]))
    except FileNotFoundError:
        raise ConfigError(f"quality prior file not found: {path}") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"quality prior file {path} cannot be used: {exc}") from None


def resolve_prior(spec: str, n_features: int | None = None) -> QualityPrior | None:
    """The prior ``spec`` names: none (``""``, "none"), a bundled name, a file path, or "auto",
    the bundled prior when it fits ``n_features`` features (other backbones get no prior)."""
    if spec in NO_PRIOR:
        return None
    name = BUNDLED[0] if spec == "auto" else spec
    path = str(files("ml_backend.prediction") / "priors" / f"{name}.npz") if name in BUNDLED else spec
    prior = load_prior(path)
    if spec == "auto" and n_features is not None and n_features != len(prior.coef):
        return None
    return prior


def fit_prior(X: np.ndarray, y: np.ndarray, features: str, trained_on: str) -> QualityPrior:
    """A ridge fit on ``X``, ``y`` (penalty by leave-one-out, as the predictor chooses it)."""
    from .ridge import RidgePredictor

    model = RidgePredictor(prior="none").fit(X, y)  # a prior of its own would be learnt into it
    return QualityPrior(model.scaler_.mean_, model.scaler_.scale_, model.coef_, model.y_mean_, features, trained_on)
