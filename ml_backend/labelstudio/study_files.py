"""The study's files beside MOS.csv: every vote (``export --votes``) and the rater report
(``export --raters-report``: a CSV and a PNG beside it)."""
from __future__ import annotations

import csv
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from ..errors import MissingPathError, UserError
from ..features.images import natural_key
from ..ratings.raters import RaterStats
from ..ratings.screening import ScreenResult
from ..ratings.votes import Vote

VOTE_COLUMNS = ["Image_Name", "Task_Id", "Rater", "Email", "Score", "Created", "Updated", "Lead_Time_S",
                "Skipped", "Counted", "Rater_Rejected"]
RATER_COLUMNS = ["Rater", "Email", "Ratings", "Skipped", "SRCC_With_Others", "Bias", "Inconsistency",
                 "Longest_Same_Score_Run", "Median_Lead_Time_S", "Gold_Rated", "Gold_Correct", "Rejected", "Reason"]


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return value


def _write(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    if not path.parent.is_dir():
        raise MissingPathError(f"output folder {path.parent} does not exist")
    try:
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            writer.writerows([[_cell(value) for value in row] for row in rows])
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_votes(path: Path, votes: list[Vote], names: dict[Hashable, str], used: set[int | None],
                result: ScreenResult) -> None:
    """One row per annotation (skipped and superseded ones too), by image name then time.
    ``Counted``: the vote is in the image's MOS (the rater's latest, not skipped, rater not
    rejected); ``used`` holds the annotation ids of the raters' latest votes."""
    ordered = sorted(votes, key=lambda v: (natural_key(names.get(v.item, "")), v.created, v.annotation_id or 0))
    _write(path, VOTE_COLUMNS, [[
        names.get(v.item, ""), v.item, v.rater, v.email, v.score, v.created, v.updated, v.lead_time,
        v.skipped, v.annotation_id in used and v.rater not in result.rejected, v.rater in result.rejected,
    ] for v in ordered])


def write_rater_report(path: Path, stats: list[RaterStats], method: str,
                       progress: Callable[[str], None] = lambda _: None) -> Path:
    """``path`` (CSV) and the PNG beside it (same name, .png); returns the PNG's path."""
    _write(path, RATER_COLUMNS, [[
        s.rater, s.email, s.ratings, s.skipped, s.srcc_others, s.bias, s.inconsistency, s.longest_run,
        s.median_lead_time, s.gold_rated, s.gold_correct, s.rejected, s.reason,
    ] for s in stats])
    png = path.with_suffix(".png")
    progress(f"drawing {png.name}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [s.email or s.rater for s in stats]
    colours = ["tab:red" if s.rejected else "tab:blue" for s in stats]
    height = max(2.5, 0.45 * len(stats) + 1.2)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, height), sharey=True)
    positions = range(len(stats))
    left.barh(positions, [s.srcc_others if s.srcc_others is not None else 0.0 for s in stats], color=colours)
    left.set_xlim(-1, 1)
    left.axvline(0, color="grey", lw=0.8)
    left.set_yticks(list(positions), labels)
    left.invert_yaxis()
    left.set_xlabel("SRCC with the other raters' MOS")
    for y, s in enumerate(stats):
        left.text(-0.98, y, f"{s.ratings} ratings", va="center", fontsize=8)
    biases = [s.bias if s.bias is not None else 0.0 for s in stats]
    spreads = [s.inconsistency if s.inconsistency is not None else 0.0 for s in stats]
    for y, (bias, spread, colour) in enumerate(zip(biases, spreads, colours, strict=True)):
        right.errorbar([bias], [y], xerr=[spread], fmt="o", color=colour, capsize=3)
    right.axvline(0, color="grey", lw=0.8)
    right.set_xlabel("bias (dot) ± inconsistency (bar), score units")
    figure.suptitle(f"Raters (screening: {method}; red = rejected)", fontsize=10)
    figure.tight_layout()
    figure.savefig(png, dpi=110)
    plt.close(figure)
    return png
