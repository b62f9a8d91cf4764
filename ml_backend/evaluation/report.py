"""Summaries, tables, plots and the results files of an evaluation."""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from .metrics import CLASSES
from .replay import Trial

MARKERS = {"stream": "D", "upfront": "o", "active": "s"}


def summarise(trials: Iterable[Trial], default: tuple[str, str, str] | None = None) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds, per configuration and budget; ``default`` (selector,
    predictor, strategy) marks the product's default configuration's rows."""
    groups: dict[tuple, list[Trial]] = defaultdict(list)
    for trial in trials:
        groups[(*trial.config, trial.budget)].append(trial)
    rows = []
    for (selector, predictor, labels, strategy, budget), group in sorted(groups.items()):
        row: dict[str, Any] = {"selector": selector, "predictor": predictor, "labels": labels,
                               "strategy": strategy, "budget": budget, "seeds": len(group),
                               "default": (selector, predictor, strategy) == default}
        names = list(group[0].metrics) + ["confidence_srcc"]
        for name in names:
            values = np.array([t.confidence_srcc if name == "confidence_srcc" else t.metrics[name] for t in group])
            row[name] = float(values.mean())
            row[f"{name}_std"] = float(values.std())
        rows.append(row)
    return rows


def markdown_table(summary: list[dict[str, Any]]) -> str:
    header = ("| labels | selector | predictor | strategy | budget | SRCC | PLCC | PLCC raw | KRCC | RMSE "
              "| F1 (3 classes) | RMSE bad / normal / good | SRCC(conf, \\|err\\|) | default |")
    lines = [header, "|" + "---|" * 14]
    for r in summary:
        def cell(name: str, r: dict[str, Any] = r) -> str:
            return f"{r[name]:.3f} ± {r[name + '_std']:.3f}" if name in r else "—"

        by_class = " / ".join(f"{r[f'rmse_{c}']:.1f}" for c in CLASSES) if "rmse_bad" in r else "—"
        lines.append(
            f"| {r['labels']} | {r['selector']} | {r['predictor']} | {r['strategy']} | {r['budget']} | "
            f"{cell('srcc')} | {cell('plcc')} | {cell('plcc_raw')} | {cell('krcc')} | "
            f"{r['rmse']:.2f} ± {r['rmse_std']:.2f} | {cell('f1_3class')} | {by_class} | "
            f"{cell('confidence_srcc')} | {'yes' if r.get('default') else ''} |"
        )
    return "\n".join(lines)


def paired(trials: Iterable[Trial], default: tuple[str, str, str], metric: str = "srcc") -> list[dict[str, Any]]:
    """Each configuration against the default on the same seeds (same pool, same labels): the
    mean paired difference of ``metric``, its standard error, and whether it is a gain or a loss
    (beyond two standard errors) or neither. When the default's strategy was not run, each
    strategy's trials pair with the default selector and predictor in that strategy."""
    trials = list(trials)
    within = default[2] not in {t.strategy for t in trials}

    def key(t: Trial) -> tuple:
        return (t.labels, t.strategy if within else default[2], t.budget, t.seed)

    base = {key(t): t for t in trials
            if (t.selector, t.predictor) == default[:2] and (within or t.strategy == default[2])}
    diffs: dict[tuple, list[float]] = defaultdict(list)
    for t in trials:
        reference = base.get(key(t))
        if reference is not None and reference is not t:
            diffs[(t.selector, t.predictor, t.labels, t.strategy, t.budget)].append(
                t.metrics[metric] - reference.metrics[metric])
    rows = []
    for (selector, predictor, labels, strategy, budget), values in sorted(diffs.items()):
        mean = float(np.mean(values))
        se = float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None
        if se is None:
            verdict = "one seed: no verdict"
        else:
            verdict = "gain" if mean > 2 * se else "loss" if mean < -2 * se else "within 2 SE"
        rows.append({"selector": selector, "predictor": predictor, "labels": labels, "strategy": strategy,
                     "budget": budget, "metric": metric, "seeds": len(values), "difference": mean, "se": se,
                     "verdict": verdict,
                     "against": f"{default[0]} + {default[1]}, {strategy if within else default[2]}"})
    return rows


def markdown_paired(rows: list[dict[str, Any]], default: tuple[str, str, str]) -> str:
    lines = [f"Paired against the default ({default[0]} + {default[1]}, {default[2]} order; where that order "
             "was not run, the same selector and predictor in each order), same seeds and pools:", "",
             "| labels | selector | predictor | strategy | budget | against | seeds | ΔSRCC | SE | verdict |",
             "|" + "---|" * 10]
    for r in rows:
        se = "—" if r["se"] is None else f"{r['se']:.3f}"
        lines.append(f"| {r['labels']} | {r['selector']} | {r['predictor']} | {r['strategy']} | {r['budget']} | "
                     f"{r['against']} | {r['seeds']} | {r['difference']:+.3f} | {se} | {r['verdict']} |")
    return "\n".join(lines)


def plot(summary: list[dict[str, Any]], path: Path, title: str, scored: str = "the unlabelled images") -> None:
    """Save ``figure`` as a PNG."""
    fig = figure(summary, title, scored)
    import matplotlib.pyplot as plt  # after figure() chose the Agg backend

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def figure(summary: list[dict[str, Any]], title: str, scored: str = "the unlabelled images") -> Any:
    """SRCC against budget, one line per configuration, with the spread over seeds, on ``scored``.

    Colour = predictor and selector, line = labels (solid oracle, dashed one noisy rater),
    marker = strategy (diamond the product's stream, circle up front, square active), so dozens of
    lines stay tellable apart; the default configuration's lines are thick; the legend sits
    outside the axes where it hides no line, and says what the bands are."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

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
        default = rows[0].get("default", False)
        ax.plot(budgets, means, "--" if key[2] == "single" else "-", linewidth=2.6 if default else 1.4,
                marker=MARKERS.get(key[3], "o"), color=colour,
                label=" / ".join(key) + (" (default)" if default else ""))
        ax.fill_between(budgets, means - spread, means + spread, color=colour, alpha=0.06)
    ax.set_xlabel("labelled images (budget)")
    ax.set_ylabel(f"SRCC with human MOS on {scored}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    seeds = sorted({row["seeds"] for row in summary})
    over = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}-{seeds[-1]}"
    handles, labels = ax.get_legend_handles_labels()
    handles.append(Patch(color="grey", alpha=0.25))
    labels.append(f"band: mean ± 1 standard deviation over {over} seed{'' if over == '1' else 's'}")
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title_fontsize=7,
              title="predictor / selector / labels / strategy")
    fig.tight_layout()
    return fig


def trials_as_dicts(trials: Iterable[Trial]) -> list[dict[str, Any]]:
    return [asdict(t) for t in trials]


def write_report(out: Path, trials: list[Trial], setup: dict[str, Any], title: str, description: str,
                 default: tuple[str, str, str] | None = None, scored: str = "the unlabelled images",
                 product_default: bool = True) -> str:
    """``results.json``, ``results.md`` and ``srcc.png`` in ``out``; returns the markdown tables
    (the paired comparison with the default too, when there is something to compare). ``scored``:
    the images the metrics are on, for the plot's axis. ``product_default`` False (features other
    than the product's, e.g. another backbone): the default's rows are still what others pair
    with, but not marked as the product's default."""
    summary = summarise(trials, default if product_default else None)
    comparison = paired(trials, default) if default else []
    table = markdown_table(summary)
    if comparison:
        table += "\n\n" + markdown_paired(comparison, default)  # type: ignore[arg-type]
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(
            {"setup": setup, "summary": summary, "paired": comparison, "trials": trials_as_dicts(trials)},
            indent=1))
        (out / "results.md").write_text(f"{description}\n\n{table}\n")
    except OSError as exc:
        raise UserError(f"cannot write the results to {out}: {exc.strerror or exc}") from None
    plot(summary, out / "srcc.png", title, scored)
    return table
