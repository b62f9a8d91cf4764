"""Replay annotation on a dataset with known MOS: how close are predictions for the unrated images?

A trial picks a labelling budget's images with a selector, gives them labels (the true MOS, or one
simulated noisy rater), fits a predictor and scores its predictions for every other image against
the human MOS. The same selector, predictor and feature code as the seed script and the backend is
used, so the numbers describe what a user of the tool gets.
"""
from __future__ import annotations

import csv
import inspect
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .metrics import all_metrics, srcc
from .predictors import create_predictor
from .selectors import SELECTORS

LABEL_MODES = ("oracle", "single")
STRATEGIES = ("upfront", "active")


class DatasetError(ValueError):
    """labels.csv is missing or malformed; the message names the file, line and field."""


@dataclass
class Dataset:
    root: Path
    paths: list[Path]
    mos: np.ndarray
    mos_std: np.ndarray | None
    scale: tuple[float, float] = (0.0, 100.0)

    def subset(self, keep: Sequence[int]) -> "Dataset":
        keep = list(keep)
        std = None if self.mos_std is None else self.mos_std[keep]
        return Dataset(self.root, [self.paths[i] for i in keep], self.mos[keep], std, self.scale)


def _number(path: Path, line: int, field_name: str, raw: str | None) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DatasetError(f"{path} line {line}: {field_name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise DatasetError(f"{path} line {line}: {field_name}={raw!r} is not a finite number")
    return value


def load_dataset(folder: Path, scale: tuple[float, float] = (0.0, 100.0), labels: str = "labels.csv") -> Dataset:
    """Read ``folder/<labels>`` (columns ``image,mos`` and optionally ``mos_std``)."""
    path = folder / labels
    if not path.is_file():
        raise DatasetError(f"{path} not found (expected columns image,mos[,mos_std])")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or [])
        for required in ("image", "mos"):
            if required not in columns:
                raise DatasetError(f"{path}: no '{required}' column (found: {', '.join(sorted(columns))})")
        has_std = "mos_std" in columns
        paths, mos, std = [], [], []
        for line, row in enumerate(reader, start=2):
            if not row.get("image"):
                raise DatasetError(f"{path} line {line}: empty 'image'")
            paths.append(folder / row["image"])
            mos.append(_number(path, line, "mos", row.get("mos")))
            if has_std:
                std.append(_number(path, line, "mos_std", row.get("mos_std")))
    if not paths:
        raise DatasetError(f"{path} has no rows")
    return Dataset(folder, paths, np.array(mos), np.array(std) if has_std else None, scale)


def simulated_labels(dataset: Dataset, mode: str, rng: np.random.Generator, step: float = 1.0) -> np.ndarray:
    """``oracle``: the MOS itself. ``single``: one rater, ``mos + N(0, mos_std)`` clipped and
    rounded to the labelling scale, because a real annotator is one noisy person."""
    if mode == "oracle":
        return dataset.mos.copy()
    if mode != "single":
        raise ValueError(f"unknown label mode '{mode}'; choose from: {', '.join(LABEL_MODES)}")
    if dataset.mos_std is None:
        raise DatasetError(f"{dataset.root / 'labels.csv'}: single-rater labels need a 'mos_std' column")
    noisy = dataset.mos + rng.normal(0.0, 1.0, len(dataset.mos)) * dataset.mos_std
    low, high = dataset.scale
    return np.clip(np.round((noisy - low) / step) * step + low, low, high)


def select(X: np.ndarray, selector: str, budget: int, seed: int, exclude: Sequence[int] = ()) -> np.ndarray:
    """``budget`` distinct rows chosen by ``selector`` among those not in ``exclude``.

    Selectors that return fewer rows than asked (DBSCAN: one per cluster) are topped up at random,
    so every configuration is compared at the same number of labels.
    """
    available = np.setdiff1d(np.arange(len(X)), np.asarray(exclude, dtype=int))
    budget = min(budget, len(available))
    factory = SELECTORS.get(selector)
    accepted = inspect.signature(factory).parameters
    params = {k: v for k, v in {"n_select": budget, "random_state": seed}.items() if k in accepted}
    chosen = available[np.asarray(factory(**params).fit(X[available]).selected_, dtype=int)[:budget]]
    if len(chosen) < budget:
        rest = np.setdiff1d(available, chosen)
        extra = np.random.default_rng(seed).choice(rest, budget - len(chosen), replace=False)
        chosen = np.concatenate([chosen, extra])
    return chosen


def subsample_rows(n_images: int, fraction: float, seed: int) -> np.ndarray:
    """The sorted rows of a seed's own random ``fraction`` of the images (all of them for 1).

    A selector that picks the same images for every seed (``ted``, ``kcenter``) shows no spread
    over seeds on a fixed dataset; replaying each seed on a different subset measures how much
    its result depends on the particular images instead. Seeded apart from the labels' noise."""
    if fraction >= 1.0:
        return np.arange(n_images)
    size = max(1, round(fraction * n_images))
    return np.sort(np.random.default_rng([seed, 1]).choice(n_images, size, replace=False))


@dataclass
class Trial:
    selector: str
    predictor: str
    labels: str
    strategy: str
    budget: int
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)
    confidence_srcc: float = 0.0  # SRCC(confidence, |error|): negative = confidence is useful

    @property
    def config(self) -> tuple[str, str, str, str]:
        return (self.selector, self.predictor, self.labels, self.strategy)


class _Model:
    """A fitted predictor plus the image files it needs when it compares pixels (similarity)."""

    def __init__(self, predictor: str, params: dict[str, Any], dataset: Dataset, X: np.ndarray,
                 y: np.ndarray, rows: np.ndarray) -> None:
        self.dataset = dataset
        self.estimator = create_predictor(predictor, params)
        self.needs_images = getattr(self.estimator, "needs_images", False)
        self.estimator.fit(X[rows], y[rows], **self._images(rows))

    def _images(self, rows: np.ndarray) -> dict[str, Any]:
        return {"images": [self.dataset.paths[i] for i in rows]} if self.needs_images else {}

    def predict_with_confidence(self, X: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.estimator.predict_with_confidence(X[rows], **self._images(rows))


def parse_predictor_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"similarity:metric=ssim,n_neighbors=3"`` -> ("similarity", {"metric": "ssim", ...})."""
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"predictor spec '{spec}': '{item}' is not key=value")
        params[key.strip()] = value.strip()
    create_predictor(name, params)  # unknown names and parameters fail here, before any work
    return name, params


def run_trial(
    X: np.ndarray, dataset: Dataset, selector: str, predictor: str, budget: int, seed: int,
    labels: str = "oracle", strategy: str = "upfront", rounds: int = 4,
) -> Trial:
    """One replay. ``predictor`` is a name or a spec with parameters (``parse_predictor_spec``).
    ``active``: half the budget up front, the rest in ``rounds`` rounds of the least confident
    images (what an annotator sorting the Data Manager by prediction score would do)."""
    name, params = parse_predictor_spec(predictor)
    rng = np.random.default_rng(seed)
    y = simulated_labels(dataset, labels, rng)
    if strategy == "upfront":
        labelled = select(X, selector, budget, seed)
    elif strategy == "active":
        labelled = select(X, selector, max(1, budget // 2), seed)
        per_round = max(1, math.ceil((budget - len(labelled)) / rounds))
        while len(labelled) < budget:
            rest = np.setdiff1d(np.arange(len(X)), labelled)
            _, confidence = _Model(name, params, dataset, X, y, labelled).predict_with_confidence(X, rest)
            take = rest[np.argsort(confidence, kind="stable")[: min(per_round, budget - len(labelled))]]
            labelled = np.concatenate([labelled, take])
    else:
        raise ValueError(f"unknown strategy '{strategy}'; choose from: {', '.join(STRATEGIES)}")
    rest = np.setdiff1d(np.arange(len(X)), labelled)
    predicted, confidence = _Model(name, params, dataset, X, y, labelled).predict_with_confidence(X, rest)
    truth = dataset.mos[rest]
    return Trial(selector, predictor, labels, strategy, len(labelled), seed,
                 all_metrics(predicted, truth), srcc(confidence, np.abs(predicted - truth)))


def summarise(trials: Iterable[Trial]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds, per configuration and budget."""
    groups: dict[tuple, list[Trial]] = defaultdict(list)
    for trial in trials:
        groups[(*trial.config, trial.budget)].append(trial)
    rows = []
    for (selector, predictor, labels, strategy, budget), group in sorted(groups.items()):
        row: dict[str, Any] = {"selector": selector, "predictor": predictor, "labels": labels,
                               "strategy": strategy, "budget": budget, "seeds": len(group)}
        names = list(group[0].metrics) + ["confidence_srcc"]
        for name in names:
            values = np.array([t.confidence_srcc if name == "confidence_srcc" else t.metrics[name] for t in group])
            row[name] = float(values.mean())
            row[f"{name}_std"] = float(values.std())
        rows.append(row)
    return rows


def markdown_table(summary: list[dict[str, Any]]) -> str:
    header = ("| labels | selector | predictor | strategy | budget | SRCC | PLCC | PLCC raw | KRCC | RMSE "
              "| SRCC(conf, \\|err\\|) |")
    lines = [header, "|" + "---|" * 11]
    for r in summary:
        cell = lambda name: f"{r[name]:.3f} ± {r[name + '_std']:.3f}"  # noqa: E731
        lines.append(
            f"| {r['labels']} | {r['selector']} | {r['predictor']} | {r['strategy']} | {r['budget']} | "
            f"{cell('srcc')} | {cell('plcc')} | {cell('plcc_raw')} | {cell('krcc')} | "
            f"{r['rmse']:.2f} ± {r['rmse_std']:.2f} | {cell('confidence_srcc')} |"
        )
    return "\n".join(lines)


def plot(summary: list[dict[str, Any]], path: Path, title: str) -> None:
    """SRCC against budget, one line per configuration, with the spread over seeds.

    Colour = predictor and selector, line = labels (solid oracle, dashed one noisy rater),
    marker = strategy (circle up front, square active), so dozens of lines stay tellable apart;
    the legend sits outside the axes where it hides no line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in summary:
        series[(row["predictor"], row["selector"], row["labels"], row["strategy"])].append(row)
    models = sorted({key[:2] for key in series})
    fig, ax = plt.subplots(figsize=(12, max(6.5, 1.0 + 0.19 * len(series))))  # room for the legend
    colours = plt.get_cmap("tab10" if len(models) <= 10 else "tab20")
    for key, rows in sorted(series.items()):
        rows.sort(key=lambda r: r["budget"])
        budgets = [r["budget"] for r in rows]
        means = np.array([r["srcc"] for r in rows])
        spread = np.array([r["srcc_std"] for r in rows])
        colour = colours(models.index(key[:2]) % colours.N)
        ax.plot(budgets, means, "--" if key[2] == "single" else "-",
                marker="s" if key[3] == "active" else "o", color=colour, label=" / ".join(key))
        ax.fill_between(budgets, means - spread, means + spread, color=colour, alpha=0.06)
    ax.set_xlabel("labelled images (budget)")
    ax.set_ylabel("SRCC with human MOS on the unlabelled images")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title_fontsize=7,
              title="predictor / selector / labels / strategy")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def trials_as_dicts(trials: Iterable[Trial]) -> list[dict[str, Any]]:
    return [asdict(t) for t in trials]
