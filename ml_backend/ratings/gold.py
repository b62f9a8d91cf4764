"""Gold images: images whose MOS range is known in advance (``seed --gold gold.csv``), so that a
rater who misses them can be flagged. The file: ``image,min,max`` (the project's scale)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from ..errors import DatasetError


def read_gold(path: Path) -> dict[str, tuple[float, float]]:
    """image name -> (min, max); a missing file, column or bad value fails naming its line."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in ("image", "min", "max") if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}: no '{missing[0]}' column (expected image,min,max; found: "
                                   f"{', '.join(reader.fieldnames or []) or 'nothing'})")
            gold: dict[str, tuple[float, float]] = {}
            for line, row in enumerate(reader, start=2):
                name = (row["image"] or "").strip()
                if not name:
                    raise DatasetError(f"{path} line {line}: empty 'image'")
                bounds = []
                for column in ("min", "max"):
                    try:
                        value = float(row[column])
                    except (TypeError, ValueError):
                        raise DatasetError(f"{path} line {line}: {column}={row[column]!r} is not a number") from None
                    if not math.isfinite(value):
                        raise DatasetError(f"{path} line {line}: {column}={row[column]!r} is not a number")
                    bounds.append(value)
                if bounds[0] > bounds[1]:
                    raise DatasetError(f"{path} line {line}: min {bounds[0]:g} is above max {bounds[1]:g}")
                if name in gold:
                    raise DatasetError(f"{path} line {line}: {name} is listed twice")
                gold[name] = (bounds[0], bounds[1])
    except OSError as exc:
        raise DatasetError(f"gold file {path}: {exc.strerror or exc}") from None
    if not gold:
        raise DatasetError(f"{path}: no gold images")
    return gold
