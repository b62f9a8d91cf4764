"""How to spend a budget of R ratings: many images rated once, or fewer images rated several times?

Simulated on a dataset with per-image rating spread (``mos_std``): a simulated rating of image i
is ``mos_i + N(0, mos_std_i)``, clipped and rounded to the scale, as in ``replay``. For each
design the product's default selector picks the images, the raters' mean is their MOS, the
default predictor fitted on those means predicts the rest, and the result is scored the way a
user receives it: the MOS.csv of every image (people's mean where rated, prediction elsewhere)
against the true MOS.

Designs: ``k`` raters on each of R / k images (k = 1, 3, 5: at most every image), and ``mixed``:
one rating on ``MIXED_FIRST`` of the budget's images, then the rest as two more ratings each on
the rated images whose rating the model (fitted without it: leave-one-out) disagrees with most,
the ones most likely to be a rater's slip (with ``weighted``, the model weighs the MOS of three
ratings as the backend does with MOS_CERTAINTY_WEIGHTS=on).
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, UserError
from ..prediction import PREDICTORS
from ..ratings.weights import label_weights, pooled_variance
from .journal import Journal, fingerprint
from .metrics import plcc_raw, rmse, srcc
from .replay import Dataset, dataset_arrays, parse_spec, select, subsample_rows

DESIGNS = ("1", "3", "5", "mixed")
#: Share of the budget spent on first ratings in the ``mixed`` design.
MIXED_FIRST = 0.6
#: The study's journal in evaluate's output folder (removed once budget.json is written).
BUDGET_JOURNAL = "budget-trials-in-progress.jsonl"


@dataclass(frozen=True)
class BudgetTrial:
    budget: int
    design: str
    seed: int
    images_rated: int
    ratings_used: int
    metrics: dict[str, float] = field(default_factory=dict)


def simulated_ratings(dataset: Dataset, rows: np.ndarray, raters: int, rng: np.random.Generator,
                      step: float = 1.0) -> np.ndarray:
    """``raters`` independent simulated ratings of each of ``rows`` (shape rows x raters)."""
    spread = dataset.spread("simulated raters")
    noisy = dataset.mos[rows, None] + rng.normal(0.0, 1.0, (len(rows), raters)) * spread[rows, None]
    low, high = dataset.scale
    return np.clip(np.round((noisy - low) / step) * step + low, low, high)


def run_budget_trial(X: np.ndarray, dataset: Dataset, budget: int, design: str, seed: int, selector: str,
                     predictor: str, settings: Mapping[str, Mapping[str, Any]] | None = None,
                     weighted: bool = False) -> BudgetTrial:
    """One design at one budget. ``weighted``: the model weighs each MOS by how sure it is, as
    the backend does with MOS_CERTAINTY_WEIGHTS=on (only the mixed design has unequal MOS)."""
    if design not in DESIGNS:
        raise ConfigError(f"unknown design '{design}'; choose from: {', '.join(DESIGNS)}")
    name, params = parse_spec(predictor)
    params = {**(settings or {}).get(name, {}), **params}
    rng = np.random.default_rng([seed, budget, DESIGNS.index(design)])
    n = len(dataset.paths)
    if design == "mixed":
        first = select(X, selector, min(n, max(2, round(MIXED_FIRST * budget))), seed)
        ratings = [list(r) for r in simulated_ratings(dataset, first, 1, rng)]
        means = np.array([r[0] for r in ratings])
        model = PREDICTORS.create(name, params).fit(X[first], means)
        disagreement = np.abs(getattr(model, "loo_residuals_", np.zeros(len(first))))
        order = np.argsort(-disagreement, kind="stable")  # LOO rows are all rows below max_exact
        for i in order[: (budget - len(first)) // 2]:
            ratings[i] += list(simulated_ratings(dataset, first[i : i + 1], 2, rng)[0])
        rated, means = first, np.array([np.mean(r) for r in ratings])
        used = sum(len(r) for r in ratings)
        weights = _weights(ratings, X[rated], means, name, params) if weighted else None
    else:
        k = int(design)
        rated = select(X, selector, min(n, budget // k), seed)
        means = simulated_ratings(dataset, rated, k, rng).mean(axis=1)
        used = k * len(rated)
        weights = None  # equal
    combined = np.empty(n)
    combined[rated] = means
    rest = np.setdiff1d(np.arange(n), rated)
    metrics: dict[str, float] = {}
    if len(rest):
        model = PREDICTORS.create(name, params).fit(X[rated], means, sample_weight=weights)
        combined[rest] = model.predict(X[rest])
        metrics["srcc_unrated"] = srcc(combined[rest], dataset.mos[rest])
    metrics |= {"srcc": srcc(combined, dataset.mos), "plcc_raw": plcc_raw(combined, dataset.mos),
                "rmse": rmse(combined, dataset.mos)}
    return BudgetTrial(budget, design, seed, len(rated), used, metrics)


def _weights(ratings: list[list[float]], X: np.ndarray, means: np.ndarray, name: str,
             params: Mapping[str, Any]) -> np.ndarray | None:
    """The backend's weights (``ratings.weights``) for MOS of unequal numbers of ratings."""
    n = np.array([len(r) for r in ratings])
    pooled = pooled_variance(n, np.array([np.std(r, ddof=1) if len(r) > 1 else np.nan for r in ratings]))
    if pooled is None:
        return None
    plain = PREDICTORS.create(name, params).fit(X, means)
    return label_weights(n, pooled / n, getattr(plain, "loo_residuals_", None))


@dataclass(frozen=True)
class BudgetStudy:
    """What to simulate: every design at every budget, for each seed (each on its own random
    ``pool`` of images when given), with one selector and predictor."""

    budgets: Sequence[int]
    seeds: int
    selector: str
    predictor: str
    #: Per predictor name, what the settings in effect give it (``Config.params_for``).
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pool: int | None = None
    #: The model weighs each MOS by how sure it is (MOS_CERTAINTY_WEIGHTS=on).
    weighted: bool = False

    def check(self, dataset: Dataset) -> BudgetStudy:
        """Every value is usable with ``dataset``, which has the rating spread; fails before any work."""
        dataset.spread("simulated raters")
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {self.seeds}")
        n_images = len(dataset.paths)
        if self.pool is not None and not 2 <= self.pool <= n_images:
            raise ConfigError(f"--pool must be between 2 and the dataset's {n_images} images, got {self.pool}")
        if any(b < 2 for b in self.budgets):
            raise ConfigError(f"rater budgets must be at least 2 ratings, got {list(self.budgets)}")
        parse_spec(self.predictor)
        return self

    def fingerprint(self, X: np.ndarray, dataset: Dataset) -> str:
        """A digest of everything this study's trials on ``X`` and ``dataset`` depend on."""
        settings = [*self.settings.values(), parse_spec(self.predictor)[1]]
        return fingerprint({"study": repr(self)}, settings, dataset_arrays(X, dataset))


def run_budget_study(X: np.ndarray, dataset: Dataset, study: BudgetStudy,
                     progress: Callable[[Iterable[Any]], Iterable[Any]] = iter,
                     journal: Journal | None = None) -> list[BudgetTrial]:
    """Every trial of ``study``. ``journal`` (opened for these inputs) keeps each finished trial,
    and supplies those an interrupted run finished."""
    study.check(dataset)
    trials = []
    for budget, design, seed in progress([(b, d, s) for b in study.budgets for d in DESIGNS
                                          for s in range(study.seeds)]):
        key = (budget, design, seed)
        if journal is not None and key in journal.done:
            trials.extend(BudgetTrial(**entry) for entry in journal.done[key])
            continue
        rows = (np.arange(len(dataset.paths)) if study.pool is None
                else subsample_rows(len(dataset.paths), study.pool / len(dataset.paths), seed))
        trial = run_budget_trial(X[rows], dataset.subset(rows), budget, design, seed, study.selector,
                                 study.predictor, study.settings, study.weighted)
        if journal is not None:
            journal.record(key, [trial])
        trials.append(trial)
    return trials


def summarise_budget(trials: Iterable[BudgetTrial]) -> list[dict[str, Any]]:
    """Per budget and design: mean and std over seeds, and the paired difference of SRCC against
    one rating per image (same seed) with its standard error."""
    groups: dict[tuple[int, str], list[BudgetTrial]] = defaultdict(list)
    for trial in trials:
        groups[(trial.budget, trial.design)].append(trial)
    rows = []
    for (budget, design), group in sorted(groups.items(), key=lambda item: (item[0][0], DESIGNS.index(item[0][1]))):
        row: dict[str, Any] = {"budget": budget, "design": design, "seeds": len(group),
                               "images_rated": float(np.mean([t.images_rated for t in group])),
                               "ratings_used": float(np.mean([t.ratings_used for t in group]))}
        for metric in group[0].metrics:
            values = np.array([t.metrics[metric] for t in group])
            row[metric], row[f"{metric}_std"] = float(values.mean()), float(values.std())
        base = {t.seed: t.metrics["srcc"] for t in groups.get((budget, "1"), [])}
        differences = np.array([t.metrics["srcc"] - base[t.seed] for t in group if t.seed in base])
        if design != "1" and len(differences) >= 2:
            row["delta_srcc"] = float(differences.mean())
            row["delta_se"] = float(differences.std(ddof=1) / np.sqrt(len(differences)))
        rows.append(row)
    return rows


def winners(summary: list[dict[str, Any]]) -> dict[int, str]:
    """Per budget, the design with the highest mean SRCC."""
    best: dict[int, tuple[float, str]] = {}
    for row in summary:
        if row["budget"] not in best or row["srcc"] > best[row["budget"]][0]:
            best[row["budget"]] = (row["srcc"], row["design"])
    return {budget: design for budget, (_, design) in sorted(best.items())}


def _label(design: str) -> str:
    if design == "mixed":
        return "mixed"
    return f"{design} rater{'s' if design != '1' else ''} per image"


def budget_table(summary: list[dict[str, Any]]) -> str:
    lines = ["| ratings R | design | images rated | ratings used | SRCC (all images) | SRCC (unrated) | RMSE "
             "| Δ SRCC vs 1 rater (± SE) |", "|" + "---|" * 8]
    for r in summary:
        unrated = f"{r['srcc_unrated']:.3f} ± {r['srcc_unrated_std']:.3f}" if "srcc_unrated" in r else "—"
        delta = f"{r['delta_srcc']:+.3f} ± {r['delta_se']:.3f}" if "delta_srcc" in r else ""
        design = _label(r["design"])
        lines.append(f"| {r['budget']} | {design} | {r['images_rated']:.0f} | {r['ratings_used']:.0f} | "
                     f"{r['srcc']:.3f} ± {r['srcc_std']:.3f} | {unrated} | {r['rmse']:.2f} | {delta} |")
    return "\n".join(lines)


def write_budget_report(out: Path, trials: list[BudgetTrial], setup: dict[str, Any], title: str) -> str:
    """``budget.json``, ``budget.md`` and ``budget.png`` in ``out``; returns the markdown."""
    summary = summarise_budget(trials)
    best = winners(summary)
    text = (budget_table(summary) + "\n\nHighest mean SRCC of the whole MOS.csv: "
            + ", ".join(f"R = {b}: {_label(d)}" for b, d in best.items()))
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "budget.json").write_text(json.dumps(
            {"setup": setup, "summary": summary, "winners": best, "trials": [asdict(t) for t in trials]}, indent=1))
        (out / "budget.md").write_text(f"{title}\n\n{text}\n")
    except OSError as exc:
        raise UserError(f"cannot write the results to {out}: {exc.strerror or exc}") from None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    budgets = sorted({r["budget"] for r in summary})
    for design in DESIGNS:
        rows = [r for r in summary if r["design"] == design]
        axis.errorbar([r["budget"] for r in rows], [r["srcc"] for r in rows], yerr=[r["srcc_std"] for r in rows],
                      marker="o", capsize=3, label=_label(design))
    axis.set_xscale("log")
    axis.set_xticks(budgets, [str(b) for b in budgets])
    axis.minorticks_off()  # under a decade apart, the log axis would label its minor ticks too ("2 x 10^2")
    axis.set_xlabel("ratings in the budget (R)")
    axis.set_ylabel("SRCC of MOS.csv with the true MOS")
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=8, title="bars: ± 1 standard deviation over the seeds", title_fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(out / "budget.png", dpi=120)
    plt.close(figure)
    return text
