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
from .replay import Trial


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
        def cell(name: str, r: dict[str, Any] = r) -> str:
            return f"{r[name]:.3f} ± {r[name + '_std']:.3f}"

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


def write_report(out: Path, trials: list[Trial], setup: dict[str, Any], title: str, description: str) -> str:
    """``results.json``, ``results.md`` and ``srcc.png`` in ``out``; returns the markdown table."""
    summary = summarise(trials)
    table = markdown_table(summary)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(
            {"setup": setup, "summary": summary, "trials": trials_as_dicts(trials)}, indent=1))
        (out / "results.md").write_text(f"{description}\n\n{table}\n")
    except OSError as exc:
        raise UserError(f"cannot write the results to {out}: {exc.strerror or exc}") from None
    plot(summary, out / "srcc.png", title)
    return table
