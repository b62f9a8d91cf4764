"""MOS.csv: one row per image, ``Image_Name,MOS`` (plus details), as export and predict write it."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .errors import UserError


@dataclass(frozen=True)
class MOSRow:
    image_name: str
    mos: float
    source: str  # "human" or "predicted"
    n_ratings: int
    std: float | None  # spread of the human ratings; None for predictions and single ratings
    model_version: str = ""
    confidence: float | None = None  # the prediction's score; None for human rows
    ci95: float | None = None  # half-width of the MOS's 95 % interval; None where undefined
    n_rejected: int = 0  # ratings of rejected raters left out
    aggregation: str = ""  # the screening method that made a human MOS


def _number(value: float) -> str:
    return f"{value:.4f}".rstrip("0").rstrip(".")


def write_csv(rows: list[MOSRow], out: TextIO, details: bool = False) -> None:
    writer = csv.writer(out, lineterminator="\n")
    header = ["Image_Name", "MOS"]
    if details:
        header += ["Source", "N_Ratings", "Std", "CI95", "N_Rejected", "Aggregation", "Model_Version", "Confidence"]
    writer.writerow(header)
    for row in rows:
        line = [row.image_name, _number(row.mos)]
        if details:
            std, ci95, confidence = ("" if v is None else _number(v) for v in (row.std, row.ci95, row.confidence))
            line += [row.source, row.n_ratings, std, ci95, row.n_rejected, row.aggregation, row.model_version,
                     confidence]
        writer.writerow(line)


def write_csv_file(rows: list[MOSRow], path: Path, details: bool = False) -> None:
    try:
        with open(path, "w", newline="") as handle:
            write_csv(rows, handle, details)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
