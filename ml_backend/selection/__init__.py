"""Pick the images to rate first, from their feature vectors (scikit-learn style selectors)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:
    from .base import Selector

SELECTORS: Registry[Selector] = Registry("selector", {
    "ted": "ml_backend.selection.ted:TEDSelector",
    "kmeans": "ml_backend.selection.kmeans:KMeansSelector",
    "faiss-kmeans": "ml_backend.selection.faiss_kmeans:FaissKMeansSelector",
    "faiss-ted": "ml_backend.selection.faiss_ted:FaissTEDSelector",
    "dbscan": "ml_backend.selection.dbscan:DBSCANSelector",
    "kcenter": "ml_backend.selection.kcenter:KCenterSelector",
    "random": "ml_backend.selection.random:RandomSelector",
    "auto": "ml_backend.selection.auto:AutoSelector",
}, check=lambda selector: selector.check_params())
