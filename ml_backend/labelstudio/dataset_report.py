"""`mos-annotator report`: is my dataset good enough yet? One HTML page and its PNGs for a project.

What it shows: human and predicted MOS histograms; every rated image predicted without its own
rating (leave-one-out) against the raters' MOS, with SRCC / PLCC / RMSE; the learning curve of
that SRCC against the number of ratings and what more ratings would add; the confidence of the
predictions; a 2-D map of the folder (rated, unrated, representatives); the inter-rater agreement
when images have several raters.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import MissingPathError, UserError
from ..evaluation.learning_curve import LearningCurve, held_out_quality, learning_curve
from ..evaluation.metrics import split_half_srcc
from ..features.extractor import FeatureExtractor
from ..features.standardise import Standardiser
from ..prediction.ridge import RidgePredictor
from .aggregation import screen_tasks
from .client import LabelStudioClient
from .exporting import newest_predictions
from .label_config import parse_label_config
from .task_images import resolve_task_image

PLOTS = ("histogram.png", "held_out.png", "learning_curve.png", "confidence.png", "map.png")


@dataclass
class DatasetReport:
    out: Path
    n_tasks: int
    n_rated: int
    held_out: dict[str, float] = field(default_factory=dict)
    curve: LearningCurve | None = None
    agreement: tuple[float, int] | None = None
    unreadable: int = 0

    def advice(self) -> str:
        if self.curve is None or self.curve.fit is None:
            return "too few ratings for a learning curve yet (at least 10 with some spread)"
        more = self.curve.more_for(0.02)
        if more is None:
            return "the learning curve is flat: more ratings would add less than 0.02 SRCC"
        return f"rate ~{more} more for +0.02 SRCC (fitted learning curve)"


def build_report(client: LabelStudioClient, project_id: int, out: Path, config: Config) -> DatasetReport:
    """Write ``out/index.html`` and the PNGs of ``PLOTS``; reads the project and the feature cache."""
    if not out.parent.is_dir():
        raise MissingPathError(f"output folder {out.parent} does not exist")
    if config.document_root is None:
        raise UserError("set LOCAL_FILES_DOCUMENT_ROOT or pass --document-root (the report reads the images)")
    tag = parse_label_config(client.get_label_config(project_id))
    tasks = client.export_tasks(project_id)
    screened = screen_tasks(tasks, tag, config.screening)
    ratings = screened.ratings()
    predicted = newest_predictions(client.predictions(project_id), tag)
    extractor = FeatureExtractor.from_config(config)
    rows, ids, unreadable = [], [], 0
    for task in tasks:
        reference = (task.get("data") or {}).get(tag.data_key)
        try:
            path = resolve_task_image(str(reference or ""), config.document_root)
            rows.append(extractor.extract_one(path, as_stored=True))
            ids.append(task["id"])
        except UserError:
            unreadable += 1
    X = np.vstack(rows).astype(np.float32) if rows else np.empty((0, 0), np.float32)
    rated = [i for i, task_id in enumerate(ids) if task_id in ratings]
    y = np.array([ratings[ids[i]].mean for i in rated])
    report = DatasetReport(out, len(tasks), len(ratings), unreadable=unreadable,
                           agreement=split_half_srcc(screened.scores_by_task()))
    out.mkdir(exist_ok=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held = truth = None
    if len(rated) >= 5 and np.ptp(y) > 0:
        model = RidgePredictor().fit(X[rated], y)
        report.held_out = held_out_quality(model, y) or {}
        if report.held_out:
            truth = y[model.loo_rows_]
            held = truth - model.loo_residuals_
    if len(rated) >= 10 and np.ptp(y) > 0:
        report.curve = learning_curve(X[rated], y)

    low, high = (tag.minimum or 0.0), (tag.maximum or 100.0)
    figure, axis = plt.subplots(figsize=(6, 4))
    bins = np.linspace(low, high, 21)
    axis.hist([r.mean for r in ratings.values()], bins=bins, alpha=0.6, label=f"rated by people ({len(ratings)})")
    axis.hist([p.value for t, p in predicted.items() if t not in ratings], bins=bins, alpha=0.6,
              label=f"predicted ({sum(t not in ratings for t in predicted)})")
    _finish(figure, axis, "MOS", "images", "MOS of the project", out / "histogram.png")

    figure, axis = plt.subplots(figsize=(5, 5))
    if held is not None:
        axis.scatter(truth, held, s=12)
        axis.plot([low, high], [low, high], color="grey", lw=1)
        axis.set_title(f"each rating predicted without it: SRCC {report.held_out['srcc']:.3f}, "
                       f"RMSE {report.held_out['rmse']:.1f}", fontsize=9)
    else:
        axis.text(0.5, 0.5, "needs 5 rated images with different MOS", ha="center", transform=axis.transAxes)
    _finish(figure, axis, "MOS (people)", "MOS predicted without that rating", None, out / "held_out.png")

    figure, axis = plt.subplots(figsize=(6, 4))
    if report.curve is not None:
        c = report.curve
        axis.errorbar(c.sizes, c.srcc_mean, yerr=c.srcc_std, marker="o", capsize=3,
                      label="measured: mean ± 1 standard deviation over random subsets")
        if c.fit is not None:
            grid = np.linspace(c.sizes[0], c.sizes[-1] * 2, 100)
            a, b, k = c.fit
            axis.plot(grid, a - b * grid ** -k, "--", label=f"fit (plateau {a:.2f})")
        axis.set_title(report.advice(), fontsize=9)
    else:
        axis.text(0.5, 0.5, "needs 10 rated images", ha="center", transform=axis.transAxes)
    _finish(figure, axis, "ratings", "SRCC, each rating predicted without it", None, out / "learning_curve.png")

    figure, axis = plt.subplots(figsize=(6, 4))
    confidence = [p.confidence for t, p in predicted.items() if t not in ratings and p.confidence is not None]
    axis.hist(confidence, bins=np.linspace(0, 1, 21))
    _finish(figure, axis, "confidence of the prediction (low = worth rating next)", "unrated images",
            None, out / "confidence.png")

    figure, axis = plt.subplots(figsize=(6, 5))
    if len(ids) >= 3:
        Z = Standardiser().fit_transform(X.astype(np.float64))
        _, _, vt = np.linalg.svd(Z - Z.mean(axis=0), full_matrices=False)
        xy = Z @ vt[:2].T
        readable = set(ids)
        representative = np.array([bool((t.get("data") or {}).get("representative")) for t in tasks
                                   if t["id"] in readable])
        is_rated = np.array([task_id in ratings for task_id in ids])
        layers = ((~is_rated, "unrated", {"c": "lightgrey", "s": 10}), (is_rated, "rated", {"c": "tab:blue", "s": 14}),
                  (representative, "representatives", {"facecolors": "none", "edgecolors": "red", "s": 40}))
        for mask, label, style in layers:
            axis.scatter(xy[mask, 0], xy[mask, 1], label=label, **style)
    _finish(figure, axis, "first principal component", "second principal component",
            "the folder in feature space", out / "map.png")

    (out / "index.html").write_text(_html(report, project_id))
    return report


def _finish(figure: Any, axis: Any, xlabel: str, ylabel: str, title: str | None, path: Path) -> None:
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    if title:
        axis.set_title(title)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(figure)


def _html(report: DatasetReport, project_id: int) -> str:
    held = report.held_out
    lines = [f"<li>{report.n_tasks} images, {report.n_rated} rated by people"
             + (f", {report.unreadable} unreadable" if report.unreadable else "") + "</li>"]
    if held:
        lines.append(f"<li>each rating predicted without it (n={held['n']}): SRCC {held['srcc']:.3f}, "
                     f"PLCC {held['plcc']:.3f}, RMSE {held['rmse']:.2f}</li>")
    lines.append(f"<li>{html.escape(report.advice())}</li>")
    if report.agreement is not None:
        lines.append(f"<li>inter-rater agreement (split-half SRCC over {report.agreement[1]} images with "
                     f"several raters): {report.agreement[0]:.3f}</li>")
    images = "".join(f'<p><img src="{name}" alt="{name}"></p>' for name in PLOTS)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>MOS project {project_id}</title></head>"
            f"<body><h1>MOS project {project_id}</h1><ul>{''.join(lines)}</ul>{images}</body></html>\n")
