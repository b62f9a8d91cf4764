"""The study side: votes of several raters per image, rater screening, MOS with intervals.

Plain numpy on a table of votes (no Label Studio): ``votes`` holds one rating per rater and image,
``screening`` the named methods that decide which raters count and what each image's MOS and
interval are, ``subject_model`` the maximum-likelihood subject model, ``raters`` the per-rater
report.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:
    from .screening import Screening

#: The screening methods by name (``export --screening``, ``MOS_SCREENING``).
SCREENINGS: Registry[Screening] = Registry("screening", {
    "none": "ml_backend.ratings.screening:Screening",
    "bt500": "ml_backend.ratings.screening:BT500Screening",
    "zscore": "ml_backend.ratings.screening:ZScoreScreening",
    "mle": "ml_backend.ratings.screening:SubjectModelScreening",
})
