"""MOS regressors on feature vectors, each with a confidence that says which image to rate next.

Importing this package (or ``knn``, ``ridge``) needs numpy, scipy and scikit-learn only; the
``similarity`` predictor, which compares pixels with torch, is imported when it is first chosen.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:
    from .base import Predictor

PREDICTORS: Registry[Predictor] = Registry("predictor", {
    "ridge": "ml_backend.prediction.ridge:RidgePredictor",
    "knn": "ml_backend.prediction.knn:KNNPredictor",
    "similarity": "ml_backend.prediction.similarity.predictor:SimilarityPredictor",
}, check=lambda predictor: predictor.check_params())
