"""Replay annotation on a dataset with known MOS: how close are predictions for the unrated images?

A trial picks a labelling budget's images with a selector, gives them labels (the true MOS, or one
simulated noisy rater), fits a predictor and scores its predictions for every other image against
the human MOS. The same selector, predictor and feature code as the seed and the backend is
used, so the numbers describe what a user of the tool gets.
"""
from __future__ import annotations

import csv
import inspect
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config
from ..errors import ConfigError, DatasetError
from ..prediction import PREDICTORS
from ..registry import Registry
from ..selection import SELECTORS
from . import LABEL_MODES, STRATEGIES
from .journal import Journal, fingerprint
from .metrics import all_metrics, srcc, terciles

#: The seed's number of representatives when no setting says otherwise (``stream`` starts with them).
REPRESENTATIVES: int = Config.__dataclass_fields__["n_representatives"].default


@dataclass
class Dataset:
    root: Path
    paths: list[Path]
    mos: np.ndarray
    mos_std: np.ndarray | None
    scale: tuple[float, float] = (0.0, 100.0)
    #: The labels file inside ``root`` it was read from, for error messages.
    labels: str = "labels.csv"

    def spread(self, needed_for: str) -> np.ndarray:
        """The per-image rating spread, or a DatasetError naming the labels file: simulated raters
        need it (commands ask before any work, so that a run without it fails at once)."""
        if self.mos_std is None:
            raise DatasetError(f"{self.root / self.labels}: {needed_for} need a 'mos_std' column")
        return self.mos_std

    def restricted_to(self, paths: Sequence[Path]) -> Dataset:
        """The images among ``paths`` (e.g. those whose features could be extracted), in that order."""
        position = {p: i for i, p in enumerate(self.paths)}
        return self.subset([position[p] for p in paths])

    def subset(self, keep: Sequence[int]) -> Dataset:
        keep = list(keep)
        std = None if self.mos_std is None else self.mos_std[keep]
        return Dataset(self.root, [self.paths[i] for i in keep], self.mos[keep], std, self.scale, self.labels)


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
    return Dataset(folder, paths, np.array(mos), np.array(std) if has_std else None, scale, labels)


def simulated_labels(dataset: Dataset, mode: str, rng: np.random.Generator, step: float = 1.0) -> np.ndarray:
    """``oracle``: the MOS itself. ``single``: one rater, ``mos + N(0, mos_std)`` clipped and
    rounded to the labelling scale, because a real annotator is one noisy person."""
    if mode == "oracle":
        return dataset.mos.copy()
    if mode != "single":
        raise ConfigError(f"unknown label mode '{mode}'; choose from: {', '.join(LABEL_MODES)}")
    noisy = dataset.mos + rng.normal(0.0, 1.0, len(dataset.mos)) * dataset.spread("single-rater labels")
    low, high = dataset.scale
    return np.clip(np.round((noisy - low) / step) * step + low, low, high)


def select(X: np.ndarray, selector: str, budget: int, seed: int, exclude: Sequence[int] = ()) -> np.ndarray:
    """``budget`` distinct rows chosen by ``selector`` (a name or a spec with parameters:
    ``parse_spec``) among those not in ``exclude``.

    Selectors that return fewer rows than asked (DBSCAN: one per cluster) are topped up at random,
    so every configuration is compared at the same number of labels.
    """
    available = np.setdiff1d(np.arange(len(X)), np.asarray(exclude, dtype=int))
    budget = min(budget, len(available))
    name, params = parse_spec(selector, SELECTORS)
    accepted = inspect.signature(SELECTORS.get(name)).parameters
    params |= {k: v for k, v in {"n_select": budget, "random_state": seed}.items() if k in accepted}
    chosen = available[np.asarray(SELECTORS.create(name, params).fit(X[available]).selected_, dtype=int)[:budget]]
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


def parse_spec(spec: str, registry: Registry[Any] = PREDICTORS) -> tuple[str, dict[str, str]]:
    """``"similarity:metric=ssim,n_neighbors=3"`` -> ("similarity", {"metric": "ssim", ...}): a
    predictor (or, with ``registry=SELECTORS``, selector) name and its parameters."""
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"{registry.kind} spec '{spec}': '{item}' is not key=value")
        params[key.strip()] = value.strip()
    registry.create(name, params)  # unknown names and parameters fail here, before any work
    return name, params


def run_trial(
    X: np.ndarray, dataset: Dataset, selector: str, predictor: str, budget: int, seed: int,
    labels: str = "oracle", strategy: str = "upfront", rounds: int = 4,
    settings: Mapping[str, Mapping[str, Any]] | None = None, representatives: int = REPRESENTATIVES,
    held: tuple[np.ndarray, Dataset] | None = None,
) -> Trial:
    """One replay. ``selector`` and ``predictor`` are names or specs with parameters (``parse_spec``).
    ``upfront``: the selector picks the whole budget. ``stream``: what the product's label stream
    does: the selector's ``representatives`` (the seed's), then one image at a time, the least
    confident of the model refitted on every label so far. ``active``: half the budget up front,
    the rest in ``rounds`` rounds of the least confident images.
    ``settings``: per predictor name, the parameters the product's settings give it (the spec's win).
    ``held``: features and dataset of images outside ``X`` that no strategy sees; when given, the
    trial is scored on them instead of on the images it left unrated, which each order chooses
    (docs/experiments.md, round 14)."""
    (trial,) = run_trials(X, dataset, selector, predictor, [budget], seed, labels, strategy, rounds, settings,
                          representatives, held)
    return trial


#: The unrated rows, and a model's predictions and confidence for them.
Ranked = tuple[np.ndarray, np.ndarray, np.ndarray]


def run_trials(
    X: np.ndarray, dataset: Dataset, selector: str, predictor: str, budgets: Sequence[int], seed: int,
    labels: str = "oracle", strategy: str = "upfront", rounds: int = 4,
    settings: Mapping[str, Mapping[str, Any]] | None = None, representatives: int = REPRESENTATIVES,
    held: tuple[np.ndarray, Dataset] | None = None,
) -> list[Trial]:
    """``run_trial`` at each of ``budgets`` (in that order), the same trials as one call per budget.

    The stream's first ``representatives`` picks do not depend on the budget and each later pick
    only on the labels before it, so a smaller budget's stream is the start of a larger one's: one
    replay to the largest budget, scored as it passes each, does the work of all of them (about
    half the refits for 25 / 50 / 100 / 200). Other strategies replay each budget on its own.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{strategy}'; choose from: {', '.join(STRATEGIES)}")
    if max(budgets) >= len(X):
        raise ConfigError(f"a budget of {max(budgets)} labels leaves none of the {len(X)} images unrated")
    name, params = parse_spec(predictor)
    params = {**(settings or {}).get(name, {}), **params}
    y = simulated_labels(dataset, labels, np.random.default_rng(seed))
    thirds = terciles(dataset.mos if held is None else np.concatenate([dataset.mos, held[1].mos]))
    trials: dict[int, Trial] = {}

    def fit(labelled: np.ndarray) -> Any:
        images = [dataset.paths[i] for i in labelled]
        return PREDICTORS.create(name, params).fit(X[labelled], y[labelled], images=images)

    def unrated(model: Any, labelled: np.ndarray) -> Ranked:
        """The rows not in ``labelled``, and the model's predictions and confidence for them."""
        rest = np.setdiff1d(np.arange(len(X)), labelled)
        return (rest, *model.predict_with_confidence(X[rest], images=[dataset.paths[i] for i in rest]))

    def score(labelled: np.ndarray, model: Any, ranked: Ranked | None = None) -> None:
        """Record the trial at ``len(labelled)`` labels (``ranked``: ``unrated(model, labelled)`` if done already)."""
        if held is None:
            rest, predicted, confidence = unrated(model, labelled) if ranked is None else ranked
            truth = dataset.mos[rest]
        else:
            predicted, confidence = model.predict_with_confidence(held[0], images=held[1].paths)
            truth = held[1].mos
        trials[len(labelled)] = Trial(selector, predictor, labels, strategy, len(labelled), seed,
                                      all_metrics(predicted, truth, thirds),
                                      srcc(confidence, np.abs(predicted - truth)))

    def least_confident(ranked: Ranked, n: int) -> np.ndarray:
        """The ``n`` unrated rows the model is least sure of: the next to rate."""
        rest, _, confidence = ranked
        return rest[np.argsort(confidence, kind="stable")[:n]]

    streamed = sorted({b for b in budgets if b > representatives}) if strategy == "stream" else []
    for budget in sorted(set(budgets) - set(streamed)):
        if strategy == "active":
            labelled = select(X, selector, max(1, budget // 2), seed)
            per_round = max(1, math.ceil((budget - len(labelled)) / rounds))
            while len(labelled) < budget:
                ranked = unrated(fit(labelled), labelled)
                labelled = np.concatenate([labelled, least_confident(ranked, min(per_round, budget - len(labelled)))])
        else:  # up front, or a stream no longer than the representatives
            labelled = select(X, selector, budget, seed)
        score(labelled, fit(labelled))
    if streamed:
        labelled = select(X, selector, max(1, representatives), seed)
        while len(labelled) < streamed[-1]:
            model = fit(labelled)
            ranked = unrated(model, labelled)
            if len(labelled) in streamed:
                score(labelled, model, ranked)
            labelled = np.concatenate([labelled, least_confident(ranked, 1)])
        score(labelled, fit(labelled))
    return [trials[b] for b in budgets]


@dataclass(frozen=True)
class Grid:
    """What to replay: every combination, each seed."""

    budgets: Sequence[int]
    selectors: Sequence[str]
    predictors: Sequence[str]
    labels: Sequence[str] = ("oracle",)
    strategies: Sequence[str] = ("upfront",)
    seeds: int = 5
    subsample: float = 1.0
    #: Each seed's own random pool of this many images (instead of ``subsample``).
    pool: int | None = None
    #: Each seed's own random images that no trial sees or rates, and every trial is scored on
    #: (0: score each trial on the images it left unrated). Drawn first; the pool from the rest.
    held_out: int = 0
    #: The product's default (selector, predictor, strategy): rows marked default, and what others are paired with.
    default: tuple[str, str, str] | None = None
    #: Per predictor name, what the settings in effect give it (``Config.params_for``), as serve would.
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: The seed's number of representatives (``MOS_REPRESENTATIVES``): where ``stream`` starts.
    representatives: int = REPRESENTATIVES

    def check(self) -> Grid:
        """Every name and value is usable; fails before any work."""
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {self.seeds}")
        if not self.budgets or min(self.budgets) < 1:
            raise ConfigError(f"--budgets must be at least 1 label each, got {list(self.budgets)}")
        if not 0.0 < self.subsample <= 1.0:
            raise ConfigError(f"--subsample must be in (0, 1], got {self.subsample}")
        if self.pool is not None and self.pool < 2:
            raise ConfigError(f"--pool must be at least 2 images, got {self.pool}")
        if self.held_out != 0 and self.held_out < 3:
            raise ConfigError(f"--held-out must be at least 3 images (a rank correlation), got {self.held_out}")
        for spec in self.selectors:
            parse_spec(spec, SELECTORS)
        for spec in self.predictors:
            parse_spec(spec)
        for mode in self.labels:
            if mode not in LABEL_MODES:
                raise ConfigError(f"unknown label mode '{mode}'; choose from: {', '.join(LABEL_MODES)}")
        for strategy in self.strategies:
            if strategy not in STRATEGIES:
                raise ConfigError(f"unknown strategy '{strategy}'; choose from: {', '.join(STRATEGIES)}")
        return self

    def fraction(self, n_images: int) -> float:
        """The share of the images not held out that each seed replays on; fails when
        ``held_out`` or ``pool`` do not fit ``n_images``."""
        if self.held_out >= n_images - 1:
            raise ConfigError(f"--held-out {self.held_out} leaves fewer than 2 of the dataset's {n_images} images "
                              "to rate")
        fraction = self.subsample if self.pool is None else self.pool / (n_images - self.held_out)
        if fraction > 1.0:
            beside = f" beside --held-out {self.held_out}" if self.held_out else ""
            raise ConfigError(f"--pool {self.pool}{beside} is larger than the dataset ({n_images} images)")
        return fraction

    def replay_images(self, n_images: int) -> int:
        """How many images each seed's replay has (its pool, or share, of those not held out)."""
        available, fraction = n_images - self.held_out, self.fraction(n_images)
        return available if fraction >= 1.0 else max(1, round(fraction * available))

    def usable_budgets(self, n_images: int) -> list[int]:
        """The budgets that leave images unrated in each seed's replay (the others are skipped);
        fails when none does."""
        size = self.replay_images(n_images)
        usable = [b for b in self.budgets if b < size]
        if not usable:
            raise ConfigError(f"--budgets {' '.join(map(str, self.budgets))}: a replay has {size} images, and every "
                              f"budget leaves none of them to score; choose budgets below {size}")
        return usable

    def fingerprint(self, X: np.ndarray, dataset: Dataset) -> str:
        """A digest of everything this grid's trials on ``X`` and ``dataset`` depend on: equal
        digests give equal trials. A file that a setting or predictor spec names (a prior) counts
        by its contents, and so does the package (its code and bundled prior)."""
        settings = [*self.settings.values(), *(parse_spec(spec)[1] for spec in self.predictors)]
        return fingerprint({"grid": repr(self)}, settings, dataset_arrays(X, dataset))


def dataset_arrays(X: np.ndarray, dataset: Dataset) -> list[np.ndarray]:
    """What trials read of a dataset, for a fingerprint: image names, MOS, spread, features."""
    names = np.array([str(p) for p in dataset.paths], dtype=str)
    spread = np.zeros(0) if dataset.mos_std is None else dataset.mos_std
    return [names, dataset.mos, spread, X]


def run_grid(X: np.ndarray, dataset: Dataset, grid: Grid,
             progress: Callable[[Iterable[Any]], Iterable[Any]] = iter, journal: Journal | None = None) -> list[Trial]:
    """Every trial of ``grid`` (budgets as large as the replay's images are skipped: every seed's
    replay has as many images): one ``run_trials`` per configuration and seed, for all the
    budgets. ``journal`` (opened for these inputs) keeps each finished replay, and supplies those
    an interrupted run finished.

    Each seed's images are cut once rather than per trial; without ``subsample``, ``pool`` and
    ``held_out`` all of them, uncopied.
    """
    n_images = len(dataset.paths)
    budgets = grid.check().usable_budgets(n_images)
    fraction = grid.fraction(n_images)
    replays, held = {}, {}
    for seed in range(grid.seeds):
        rows: np.ndarray = np.arange(n_images)
        if grid.held_out:
            drawn = np.random.default_rng([seed, 2]).permutation(n_images)
            kept_out, rows = np.sort(drawn[: grid.held_out]), np.sort(drawn[grid.held_out:])
            held[seed] = (X[kept_out], dataset.subset(kept_out.tolist()))
        if fraction >= 1.0 and not grid.held_out:
            replays[seed] = (X, dataset)
        else:
            keep = rows[subsample_rows(len(rows), fraction, seed)]
            replays[seed] = (X[keep], dataset.subset(keep))
    replayed = list(itertools.product(grid.labels, grid.strategies, grid.selectors, grid.predictors,
                                      range(grid.seeds)))
    done: dict[tuple[str, str, str, str, int, int], Trial] = {}
    for labels, strategy, selector, predictor, seed in progress(replayed):
        features, replay = replays[seed]
        key = (labels, strategy, selector, predictor, seed)
        if journal is not None and key in journal.done:
            trials = [Trial(**entry) for entry in journal.done[key]]
        else:
            trials = run_trials(features, replay, selector, predictor, budgets, seed, labels, strategy,
                                settings=grid.settings, representatives=grid.representatives, held=held.get(seed))
            if journal is not None:
                journal.record(key, trials)
        for trial in trials:
            done[(labels, strategy, selector, predictor, trial.budget, seed)] = trial
    # In the grid's order (budgets, then seeds, innermost), as results.json has always listed them.
    order = itertools.product(grid.labels, grid.strategies, grid.selectors, grid.predictors, grid.budgets,
                              range(grid.seeds))
    return [done[key] for key in order if key in done]
