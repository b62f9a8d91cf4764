#!/usr/bin/env python
"""Measure label efficiency: replay annotation on a dataset with known MOS and report agreement."""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ml_backend.backbones import BACKBONES
from ml_backend.config import Config
from ml_backend.evaluation import (
    LABEL_MODES, STRATEGIES, DatasetError, load_dataset, markdown_table, parse_predictor_spec, plot, run_trial,
    subsample_rows, summarise, trials_as_dicts,
)
from ml_backend.features import FeatureExtractor
from ml_backend.predictors import PREDICTORS
from ml_backend.selectors import SELECTORS


def parse_args(argv: list[str] | None, config: Config) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="For each budget, selector, predictor, label mode and strategy, and each seed: "
        "label the budget's images, fit, predict the rest, and compare with the human MOS (SRCC, "
        "PLCC after a 4-parameter logistic fit and raw, KRCC, RMSE; plus SRCC between the "
        "confidence and the absolute error). Writes results.json, results.md and srcc.png.",
    )
    parser.add_argument("dataset", type=Path, help="folder with labels.csv (image,mos[,mos_std]) "
                        "and the images it names")
    parser.add_argument("--labels-csv", default="labels.csv",
                        help="labels file inside DATASET (default %(default)s; the sample dataset's "
                        "is proxy_labels.csv)")
    parser.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder (default %(default)s)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--selectors", nargs="+", default=["random", "kmeans", "ted"], choices=SELECTORS.names())
    parser.add_argument("--predictors", nargs="+", default=[config.predictor, "knn"],
                        help=f"names ({', '.join(PREDICTORS.names())}) optionally with parameters, "
                        "e.g. similarity:metric=ssim,n_neighbors=3 (default: the configured "
                        "predictor MOS_PREDICTOR and the original KNN)")
    parser.add_argument("--labels", nargs="+", default=["oracle"], choices=LABEL_MODES,
                        help="oracle: the MOS; single: one simulated rater, mos + N(0, mos_std)")
    parser.add_argument("--strategies", nargs="+", default=["upfront"], choices=STRATEGIES,
                        help="upfront: the whole budget from the selector; active: half, then the "
                        "least confident images in 4 rounds")
    parser.add_argument("--seeds", type=int, default=5, help="repetitions with different seeds (default 5)")
    parser.add_argument("--subsample", type=float, default=1.0, metavar="FRACTION",
                        help="each seed replays on its own random FRACTION of the images (e.g. 0.8), "
                        "so that deterministic selectors (ted, kcenter) vary too (default 1: all)")
    parser.add_argument("--scale", type=float, nargs=2, default=[0.0, 100.0], metavar=("MIN", "MAX"),
                        help="labelling scale for simulated raters (default 0 100)")
    parser.add_argument("--backbone", choices=BACKBONES.names(), default=config.backbone)
    parser.add_argument("--cache-dir", type=Path, default=config.cache_dir)
    parser.add_argument("--max-side", type=int, default=config.max_side)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    config = Config.from_env()
    args = parse_args(argv, config)
    try:
        if not 0.0 < args.subsample <= 1.0:
            raise ValueError(f"--subsample must be in (0, 1], got {args.subsample}")
        dataset = load_dataset(args.dataset, tuple(args.scale), args.labels_csv)
        for spec in args.predictors:
            parse_predictor_spec(spec)
    except (DatasetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    extractor = FeatureExtractor(
        args.backbone, cache_dir=args.cache_dir, max_side=args.max_side,
        backbone_params=dataclasses.replace(config, backbone=args.backbone).backbone_params(),
    )
    features = extractor.extract(dataset.paths)
    for path, reason in features.failed.items():
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    ok = {p: i for i, p in enumerate(dataset.paths)}
    dataset = dataset.subset([ok[p] for p in features.paths])
    grid = list(itertools.product(args.labels, args.strategies, args.selectors, args.predictors,
                                  args.budgets, range(args.seeds)))
    # Each seed's images, cut once rather than per trial; without --subsample all of them, uncopied.
    replays = {}
    for seed in range(args.seeds):
        if args.subsample >= 1.0:
            replays[seed] = (features.features, dataset)
        else:
            keep = subsample_rows(len(dataset.paths), args.subsample, seed)
            replays[seed] = (features.features[keep], dataset.subset(keep))
    trials = []
    started = time.perf_counter()
    for labels, strategy, selector, predictor, budget, seed in tqdm(grid, desc="trials"):
        X, replay = replays[seed]
        if budget >= len(replay.paths):
            continue
        trials.append(run_trial(X, replay, selector, predictor, budget, seed, labels, strategy))
    summary = summarise(trials)
    args.out.mkdir(parents=True, exist_ok=True)
    setup = {"dataset": str(args.dataset), "images": len(dataset.paths), "backbone": args.backbone,
             "max_side": args.max_side, "seeds": args.seeds, "subsample": args.subsample, "command": " ".join(sys.argv),
             "seconds": round(time.perf_counter() - started, 1)}
    (args.out / "results.json").write_text(json.dumps(
        {"setup": setup, "summary": summary, "trials": trials_as_dicts(trials)}, indent=1))
    table = markdown_table(summary)
    subsampled = f" (each on its own random {args.subsample:.0%} of the images)" if args.subsample < 1 else ""
    (args.out / "results.md").write_text(
        f"Dataset `{args.dataset}` ({len(dataset.paths)} images), backbone `{args.backbone}`, "
        f"{args.seeds} seeds{subsampled}; mean ± std over seeds; metrics on the images not labelled.\n\n{table}\n")
    title = f"{args.dataset.name}: {len(dataset.paths)} images{subsampled}, {args.backbone}"
    plot(summary, args.out / "srcc.png", title)
    print(table)
    print(f"\nwrote {args.out / 'results.json'}, {args.out / 'results.md'}, {args.out / 'srcc.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
