"""The interface every predictor offers, so callers never ask what a predictor can do.

Every predictor takes the same keywords and ignores what it does not use: ``images`` (the files
of the rows, for predictors that compare pixels), ``row_ids`` (names of the rows, e.g. task ids)
``warm_state`` (a previous fit's ``warm_state_``, from which ridge reuses what the rows that did
not change allow; it is taken over by the new fit, so pass it to one fit only)
and ``sample_weight`` (how much each label counts: a MOS of several raters more than one rating;
ridge uses it, KNN and similarity average their neighbours' MOS as they are).
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

Images = Sequence[Path | str] | None


class Predictor(Protocol):
    #: Handed from fit to fit (see the module docstring); None for predictors that keep none.
    warm_state_: Any

    def check_params(self) -> Predictor:
        """Validate the constructor's values without fitting; ConfigError naming the culprit."""
        ...

    def fit(self, X: np.ndarray, y: np.ndarray, *, images: Images = None,
            row_ids: Sequence[Hashable] | None = None, warm_state: Any = None,
            sample_weight: np.ndarray | None = None) -> Predictor: ...

    def predict(self, X: np.ndarray, *, images: Images = None) -> np.ndarray: ...

    def predict_with_confidence(self, X: np.ndarray, *, images: Images = None) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and a confidence in [0, 1]; low confidence = worth rating next."""
        ...
