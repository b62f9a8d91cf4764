"""Ratings collected elsewhere (a P.808 toolkit, Prolific, a spreadsheet): fit on them, predict the
rest of the folder, no server. The same features, predictor and confidence as the backend."""
from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import DatasetError
from ..features.images import natural_key
from ..mos_csv import MOSRow
from ..prediction import PREDICTORS
from ..ratings.screening import mean_and_interval


def read_ratings(path: Path, scale: tuple[float, float]) -> dict[str, list[float]]:
    """image (as written, a path relative to the folder) -> one vote per rater.

    Columns ``image,score`` and optionally ``rater``: a rater's later row for an image replaces
    the earlier one (a correction, as in Label Studio); without ``rater`` every row is a vote.
    """
    try:
        handle = open(path, newline="")
    except OSError as exc:
        raise DatasetError(f"ratings file {path}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        for required in ("image", "score"):
            if required not in columns:
                raise DatasetError(f"{path}: no '{required}' column (expected image,score[,rater]; found: "
                                   f"{', '.join(sorted(columns)) or 'nothing'})")
        votes: dict[str, dict[Any, float]] = {}
        for line, row in enumerate(reader, start=2):
            image = (row.get("image") or "").strip()
            if not image:
                raise DatasetError(f"{path} line {line}: empty 'image'")
            raw = row.get("score")
            try:
                score = float(raw)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise DatasetError(f"{path} line {line}: score={raw!r} is not a number") from None
            if not (math.isfinite(score) and scale[0] <= score <= scale[1]):
                raise DatasetError(f"{path} line {line}: score={raw!r} is outside the scale {scale[0]:g}-{scale[1]:g}")
            rater = (row.get("rater") or "").strip() or ("row", line)
            votes.setdefault(PurePosixPath(image).as_posix(), {})[rater] = score
    if not votes:
        raise DatasetError(f"{path} has no ratings")
    return {image: list(by_rater.values()) for image, by_rater in votes.items()}


def _human(image: str, votes: list[float]) -> MOSRow:
    """The raters' mean with its Student-t interval (no screening: a CSV has no rater history)."""
    n, mos, std, ci95 = (float(a[0]) for a in mean_and_interval(np.array([votes], dtype=float)))
    return MOSRow(image, mos, "human", int(n), None if np.isnan(std) else std, ci95=None if np.isnan(ci95) else ci95,
                  aggregation="none")


def predict_rest(names: Sequence[str], X: np.ndarray, ratings: Mapping[str, list[float]], predictor: str,
                 params: Mapping[str, Any], scale: tuple[float, float], unreadable: Sequence[str] = ()) -> list[MOSRow]:
    """MOS.csv rows, sorted numerically by name: the raters' mean for every rated image (also the
    ``unreadable`` ones, which have no features), and for the other images ``names`` (rows of
    ``X``) the predictor fitted on the readable rated ones, clipped to ``scale``."""
    present = set(names) | set(unreadable)
    rows = [_human(image, votes) for image, votes in ratings.items() if image in present]
    rated = [i for i, name in enumerate(names) if name in ratings]
    rest = [i for i, name in enumerate(names) if name not in ratings]
    if rest:
        if not rated:
            raise DatasetError("none of the rated images is among the folder's readable images: nothing to learn from")
        means = np.array([statistics.fmean(ratings[names[i]]) for i in rated])
        model = PREDICTORS.create(predictor, dict(params)).fit(X[rated], means, row_ids=[names[i] for i in rated])
        values, confidence = model.predict_with_confidence(X[rest])
        version = f"{predictor}-{len(rated)}-ratings"
        rows += [MOSRow(names[i], float(np.clip(v, *scale)), "predicted", 0, None, version, float(c))
                 for i, v, c in zip(rest, values, confidence, strict=True)]
    return sorted(rows, key=lambda row: natural_key(row.image_name))


def unknown_images(ratings: Mapping[str, list[float]], names: Sequence[str]) -> list[str]:
    """Rated images that are not among ``names`` (the folder's images)."""
    known = set(names)
    return sorted((image for image in ratings if image not in known), key=natural_key)
