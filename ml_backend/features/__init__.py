"""Images in, feature vectors out: reading, backbones, the feature cache, batch extraction.

Importing this package is cheap (no torch): the backbones load on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:
    from .backbones import Backbone

BACKBONES: Registry[Backbone] = Registry("backbone", {
    "efficientnet_lite012": "ml_backend.features.backbones:EfficientNetLite012",
    "efficientnet_lite0": "ml_backend.features.backbones:EfficientNetLite0",
    "resnet50": "ml_backend.features.backbones:ResNet50",
})
