"""``mos-annotator``: one command, a subcommand per job.

Every default comes from the settings (``mos-annotator settings`` lists them). A ``UserError``
from any subcommand is printed as one line and exits 1. Heavy modules (torch, Label Studio's SDK)
are imported only by the subcommand that runs, so ``--help`` answers at once.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .config import PORT_BOUNDS, Config, effective_table, settings_table
from .errors import ConfigError, UserError
from .features import BACKBONES
from .prediction import PREDICTORS
from .ratings import SCREENINGS
from .selection import SELECTORS

if TYPE_CHECKING:
    import numpy as np

    from .evaluation.journal import Journal
    from .evaluation.replay import Dataset

Handler = Callable[[argparse.Namespace, Config], int]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = Config.from_env()
        parser = build_parser(config)
        args = parser.parse_args(argv)
        handler: Handler = args.handler
        return handler(args, config)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser(config: Config) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mos-annotator",
        description="Build Mean Opinion Score datasets with Label Studio: rate a fraction of an image "
        "folder, predict the rest. Every setting is an environment variable (`mos-annotator settings`).",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in (_serve, _seed, _features, _export, _report, _predict, _evaluate, _train_prior, _sample, _settings,
                _quickstart, _benchmark):
        add(commands, config)
    return parser


def _command(commands: argparse._SubParsersAction, name: str, summary: str, description: str,
             handler: Handler) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=description)
    parser.set_defaults(handler=handler)
    return parser


def _label_studio_options(parser: argparse.ArgumentParser, config: Config) -> None:
    group = parser.add_argument_group("Label Studio")
    group.add_argument("--url", default=config.label_studio_url,
                       help="Label Studio URL (LABEL_STUDIO_URL; now: %(default)s)")
    group.add_argument("--api-key", default=config.label_studio_api_key,
                       help="Label Studio token (LABEL_STUDIO_API_KEY)")


def _feature_options(parser: argparse.ArgumentParser, config: Config) -> None:
    group = parser.add_argument_group("features")
    group.add_argument("--backbone", choices=BACKBONES.names(), default=config.backbone,
                       help="CNN backbone (MOS_BACKBONE; now: %(default)s)")
    group.add_argument("--cache-dir", type=Path, default=config.cache_dir,
                       help="feature cache (MOS_CACHE_DIR; now: %(default)s)")
    group.add_argument("--max-side", type=int, default=config.max_side,
                       help="downscale images whose longer side exceeds this (MOS_MAX_SIDE; now: %(default)s)")


def _with_features(config: Config, args: argparse.Namespace) -> Config:
    return dataclasses.replace(config, backbone=args.backbone, cache_dir=args.cache_dir, max_side=args.max_side)


# --- serve -----------------------------------------------------------------------------------
def _serve(commands: argparse._SubParsersAction, config: Config) -> None:
    parser = _command(commands, "serve", "run the ML backend Label Studio connects to",
                      "Run the ML backend (waitress, one process, 8 threads). Settings come from the "
                      "environment; see `mos-annotator settings`.", run_serve)
    parser.add_argument("--host", default=config.host, help="listen address (MOS_HOST; now: %(default)s)")
    parser.add_argument("--port", type=int, default=config.port, help="port (MOS_PORT; now: %(default)s)")


def run_serve(args: argparse.Namespace, config: Config) -> int:
    config = dataclasses.replace(config, host=args.host, port=args.port)
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per SDK call drowns the story
    from waitress import serve

    from .features.extractor import FeatureExtractor
    from .service.app import create_app
    from .service.service import MOSService

    PREDICTORS.create(config.predictor, config.params_for(config.predictor))  # bad settings fail here
    extractor = FeatureExtractor.from_config(config)  # and a bad weights file too, before serving
    app = create_app(config, MOSService(config, extractor=extractor))
    logging.getLogger("ml_backend").info(
        "MOS backend on http://%s:%s (backbone %s, predictor %s %s, state %s)",
        config.host, config.port, config.backbone, config.predictor,
        config.params_for(config.predictor), config.state_dir,
    )
    serve(app, host=config.host, port=config.port, threads=8, ident="mos-annotator")
    return 0


# --- seed ------------------------------------------------------------------------------------
def _seed(commands: argparse._SubParsersAction, config: Config) -> None:
    parser = _command(
        commands, "seed", "create a Label Studio project from an image folder, representatives first",
        "Extract CNN features of every image in FOLDER (cached), pick representative images, create "
        "(or reuse) a Label Studio project, import every image not yet in it, representatives first, "
        "then connect the ML backend.", run_seed)
    parser.add_argument("folder", type=Path, help="image folder (searched recursively); must lie inside "
                        "LOCAL_FILES_DOCUMENT_ROOT")
    _label_studio_options(parser, config)
    from .labelstudio.label_config import BUNDLED, bundled_config

    project = parser.add_argument_group("project")
    project.add_argument("--document-root", type=Path, default=config.document_root,
                         help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT (now: %(default)s)")
    project.add_argument("--title", help="project title (default: 'MOS <folder name>'); an existing project "
                         "with this title is reused")
    project.add_argument("--project-id", type=int, help="add to this existing project instead")
    project.add_argument("--label-config", type=Path, default=bundled_config(BUNDLED[0]),
                         help=f"labeling config XML for a new project (default: the shipped {BUNDLED[0]}; "
                         f"also shipped: {', '.join(BUNDLED[1:])}, as label_config/ in the repository)")
    project.add_argument("--raters", type=int, help="annotations wanted per image (MOS = their mean); "
                         "default 1 for a new project, unchanged for an existing one")
    project.add_argument("--mode", choices=("blind", "suggest"), default="blind",
                         help="blind (default): raters see no model output, predictions only order the "
                         "stream and fill the Data Manager and the export; suggest: a line 'model "
                         "ridge-v3: 56 · confidence 0.42' under an empty score control (it anchors raters: "
                         "README)")
    project.add_argument("--gold", type=Path, help="CSV image,min,max of gold images (MOS range known in advance, "
                         "on the project's scale): stored as task fields no rater sees; a rater who misses "
                         "more than a quarter of them is rejected by the export's screening (the sample "
                         "dataset writes one: gold.csv)")
    project.add_argument("--duplicates-last", action="store_true",
                         help="near-duplicate groups (perceptual hash): the stream hands out one image per "
                         "group first, the others after every other image (still predicted, still rateable; "
                         "their task field near_duplicate_of names the group's first)")
    project.add_argument("--backend-url", default=config.backend_url or None,
                         help="ML backend URL as Label Studio reaches it (MOS_BACKEND_URL); omit to connect "
                         "it later in the UI")
    selection = parser.add_argument_group("selection")
    selection.add_argument("--selector", choices=SELECTORS.names(), default=config.selector,
                           help="how representatives are picked (MOS_SELECTOR; now: %(default)s)")
    selection.add_argument("-n", "--n-representatives", type=int,
                           help=f"number of representatives (MOS_REPRESENTATIVES; now: {config.n_representatives}; "
                           "DBSCAN default: one per cluster)")
    selection.add_argument("--eps", type=float, help="DBSCAN eps (default: chosen from the data)")
    selection.add_argument("--min-samples", type=int, help="DBSCAN min_samples (default: the selector's)")
    selection.add_argument("--include-outliers", action="store_true",
                           help="DBSCAN: also make outlier images representatives")
    selection.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    _feature_options(parser, config)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_seed(args: argparse.Namespace, config: Config) -> int:
    from .labelstudio.client import LabelStudioClient
    from .labelstudio.seeding import SeedOptions, seed_project, selector_params

    if args.document_root is None:
        raise UserError("set LOCAL_FILES_DOCUMENT_ROOT or pass --document-root")
    for flag, value in (("-n/--n-representatives", args.n_representatives), ("--raters", args.raters)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    count = args.n_representatives
    if count is None and args.selector != "dbscan":
        count = config.n_representatives
    options = SeedOptions(
        folder=args.folder, document_root=args.document_root, label_config=args.label_config,
        title=args.title, project_id=args.project_id, selector=args.selector,
        selector_params=selector_params(args.selector, count, args.seed, args.eps, args.min_samples,
                                        args.include_outliers),
        features=_with_features(config, args), backend_url=args.backend_url, raters=args.raters,
        progress=not args.no_progress, mode=args.mode, duplicates_last=args.duplicates_last, gold=args.gold,
        backend_auth=(config.basic_auth_user, config.basic_auth_pass)
        if config.basic_auth_user and config.basic_auth_pass else None,
    )
    report = seed_project(LabelStudioClient(args.url, args.api_key), options)
    print(f"project:          {report.project_url} (id {report.project_id}, "
          f"{'created' if report.created else 'existing'})")
    print(f"images:           {report.n_images} readable, {report.n_imported} imported, "
          f"{report.n_already_present} already in the project")
    print(f"representatives:  {len(report.representatives)} from {report.n_clusters} clusters "
          f"({args.selector}): {', '.join(report.representatives[:10])}"
          f"{' ...' if len(report.representatives) > 10 else ''}")
    if report.structure is not None:
        s = report.structure
        print(f"structure:        {s.n_clusters} clusters by {s.method} (best silhouette of k-means, agglomerative, "
              f"Gaussian mixture, HDBSCAN: {s.silhouette:.2f}; Davies-Bouldin {s.davies_bouldin:.2f}, "
              f"Calinski-Harabasz {s.calinski_harabasz:.0f})")
    if args.gold:
        print(f"gold:             {report.n_gold} gold image(s) imported (fields gold_min, gold_max; hidden "
              "in the Rate next tab)")
    print(f"ML backend:       {report.backend}")
    if len(report.representatives) > report.n_images / 2:
        print(f"warning: {len(report.representatives)} representatives for {report.n_images} images: more than "
              "half the folder is rated up front; the model predicts little (try -n of about 5-10 % of the "
              "folder)", file=sys.stderr)
    if report.skipped:
        print(f"skipped:          {len(report.skipped)} file(s)")
        for name, reason in sorted(report.skipped.items()):
            print(f"  {name}: {reason}")
    if report.duplicates:
        print(f"duplicates:       {len(report.duplicates)} group(s) of byte-identical images (each imported)")
        for names in report.duplicates:
            print(f"  {' = '.join(names)}")
    if report.near_duplicates is None:
        print("near-duplicates:  not checked (folder larger than the perceptual-hash limit)")
    elif report.near_duplicates:
        how = ("one per group is rated first, the others last: --duplicates-last" if args.duplicates_last
               else "each is rated on its own; --duplicates-last rates one per group first")
        print(f"near-duplicates:  {len(report.near_duplicates)} group(s) by perceptual hash (the same scene, or "
              f"versions of one image: {how})")
        for names in report.near_duplicates[:10]:
            print(f"  {' ~ '.join(names[:6])}{f' ... ({len(names)} images)' if len(names) > 6 else ''}")
        if len(report.near_duplicates) > 10:
            print(f"  ... and {len(report.near_duplicates) - 10} more groups")
    return 0


# --- features --------------------------------------------------------------------------------
def _features(commands: argparse._SubParsersAction, config: Config) -> None:
    parser = _command(
        commands, "features", "fill the feature cache for a folder ahead of time (here or on a Ray cluster)",
        "Compute the CNN features of every image in FOLDER into the feature cache (MOS_CACHE_DIR), so that "
        "seed, evaluate and the backend only look them up. Images already there cost a hash; an interrupted "
        "run resumes. With --ray, Ray Data reads the files and one actor per worker computes and stores "
        "them: every node must see FOLDER and the cache at the same path (docs/cluster.md).", run_features)
    parser.add_argument("folder", type=Path, help="image folder (searched recursively)")
    _feature_options(parser, config)
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="run on Ray: a cluster's address (e.g. auto, or host:6379 from `ray start --head`), "
                        "or none for a local one")
    parser.add_argument("--workers", type=int, default=None,
                        help="Ray actors, one backbone and one thread each (default: the cores here, or the "
                        "cluster's CPUs but one)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_features(args: argparse.Namespace, config: Config) -> int:
    from .features.images import list_images
    from .features.precompute import extract_locally, extract_with_ray

    config = _with_features(config, args)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    paths, skipped = list_images(args.folder)
    if args.ray is None:
        report = extract_locally(paths, config, progress=not args.no_progress)
        where = "this process"
    else:
        report = extract_with_ray(paths, config, args.workers, args.ray or None, progress=not args.no_progress)
        where = f"Ray, {report.workers} worker(s)"
    rate = report.n_computed / report.seconds if report.seconds > 0 else 0.0
    print(f"features:         {report.n_images} of {len(paths)} images in the cache {config.cache_dir} "
          f"({report.n_computed} computed now, {report.n_images - report.n_computed} already there) in "
          f"{report.seconds:.1f} s ({where}; {rate:.1f} img/s computed)")
    unusable = {**skipped, **report.failed}
    if unusable:
        print(f"skipped:          {len(unusable)} file(s)")
        root = args.folder.resolve()
        for path, reason in sorted(unusable.items()):
            resolved = path.resolve()
            print(f"  {resolved.relative_to(root) if resolved.is_relative_to(root) else path}: {reason}")
    return 0


# --- export ----------------------------------------------------------------------------------
def _export(commands: argparse._SubParsersAction, config: Config) -> None:
    parser = _command(
        commands, "export", "write MOS.csv: human means where rated, predictions elsewhere",
        "Export Image_Name,MOS for every task of a project, sorted numerically by image name (img2 "
        "before img10). MOS is the mean over raters where people rated the image (cancelled "
        "annotations ignored; a rater's latest annotation counts) and the newest prediction "
        "elsewhere. Images with neither are listed on stderr.", run_export)
    parser.add_argument("--project-id", type=int, required=True, help="Label Studio project id")
    parser.add_argument("--out", type=Path, default=Path("MOS.csv"), help="output CSV (default %(default)s)")
    parser.add_argument("--details", action="store_true",
                        help="add Source (human/predicted), N_Ratings (accepted), Std, CI95 (half-width: Student t "
                        "for means, the subject model's for mle), N_Rejected (ratings of rejected raters), "
                        "Aggregation (the screening), Model_Version, Confidence columns")
    parser.add_argument("--screening", choices=SCREENINGS.names(), default=config.screening,
                        help="which raters count and how their scores make the MOS (MOS_SCREENING; now: "
                        "%(default)s): none, bt500 (ITU-R BT.500 subject rejection), zscore, mle (P.910 Annex E "
                        "subject model); README: Several raters")
    parser.add_argument("--votes", type=Path, help="also write every rating to this CSV (image, rater id and "
                        "e-mail, score, created/updated, lead time, skipped, counted)")
    parser.add_argument("--raters-report", type=Path, help="also write a per-rater CSV here and a PNG beside it "
                        "(ratings, SRCC with the others, bias, inconsistency, same-score runs, speed, gold, rejected)")
    parser.add_argument("--no-refresh", action="store_true",
                        help="do not ask the connected ML backend (through Label Studio) for predictions "
                        "of unrated images first; use only stored predictions")
    _label_studio_options(parser, config)


def run_export(args: argparse.Namespace, config: Config) -> int:
    from .labelstudio.client import LabelStudioClient
    from .labelstudio.exporting import StudyFiles, export_project

    report = export_project(LabelStudioClient(args.url, args.api_key), args.project_id, args.out,
                            details=args.details, refresh=not args.no_refresh,
                            progress=lambda step: print(f"export: {step} ...", flush=True),
                            screening=args.screening, study=StudyFiles(args.votes, args.raters_report))
    print(f"wrote {report.out}: {report.n_human + report.n_predicted} images ({report.n_human} rated by "
          f"people, {report.n_predicted} predicted)")
    print(f"screening {report.screening}: {len(report.rejected)} rater(s) rejected")
    for rater, reason in report.rejected.items():
        print(f"  {rater}: {reason}")
    if report.lost_to_screening:
        print(f"  {report.lost_to_screening} image(s) rated only by rejected raters: their MOS is the prediction")
    for path in (args.votes, args.raters_report, report.raters_png):
        if path is not None:
            print(f"wrote {path}")
    if report.missing:
        shown = ", ".join(report.missing[:20]) + (" ..." if len(report.missing) > 20 else "")
        print(f"warning: {len(report.missing)} image(s) have neither a rating nor a prediction and are not "
              f"in the CSV: {shown}", file=sys.stderr)
    return 0


# --- report ----------------------------------------------------------------------------------
def _report(commands: argparse._SubParsersAction, config: Config) -> None:
    parser = _command(
        commands, "report", "is my dataset good enough yet? an HTML page with the project's numbers and plots",
        "Write OUT/index.html and its PNGs for a project: MOS histograms (people, predicted), each rated "
        "image predicted without its own rating against the people's MOS (SRCC, PLCC, RMSE), the learning "
        "curve of that SRCC against the number of ratings with what more ratings would add, the "
        "confidence of the predictions, a 2-D map of the folder, and the inter-rater agreement when "
        "images have several raters. Reads Label Studio and the feature cache.", run_report)
    parser.add_argument("--project-id", type=int, required=True, help="Label Studio project id")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output folder (default %(default)s)")
    parser.add_argument("--document-root", type=Path, default=config.document_root,
                        help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT (now: %(default)s)")
    _label_studio_options(parser, config)
    _feature_options(parser, config)


def run_report(args: argparse.Namespace, config: Config) -> int:
    from .labelstudio.client import LabelStudioClient
    from .labelstudio.dataset_report import PLOTS, build_report

    settings = dataclasses.replace(_with_features(config, args), document_root=args.document_root)
    report = build_report(LabelStudioClient(args.url, args.api_key), args.project_id, args.out.resolve(), settings)
    held = report.held_out
    print(f"{report.n_tasks} images, {report.n_rated} rated"
          + (f"; each rating predicted without it: SRCC {held['srcc']:.3f}, RMSE {held['rmse']:.2f}" if held else ""))
    print(report.advice())
    print(f"wrote {report.out / 'index.html'} and {', '.join(PLOTS)}")
    return 0


# --- predict ---------------------------------------------------------------------------------
def _predict(commands: argparse._SubParsersAction, config: Config) -> None:
    parser = _command(
        commands, "predict", "MOS.csv from ratings collected elsewhere: fit on them, predict the rest",
        "Read RATINGS (CSV with columns image,score[,rater]; image paths relative to FOLDER), extract "
        "the features of every image in FOLDER (cached), fit the predictor on the raters' mean per "
        "image and write MOS.csv: the mean where rated, the prediction elsewhere. No Label Studio, "
        "no server.", run_predict)
    parser.add_argument("folder", type=Path, help="image folder (searched recursively)")
    parser.add_argument("--ratings", type=Path, required=True, help="CSV: image,score[,rater]")
    parser.add_argument("--out", type=Path, default=Path("MOS.csv"), help="output CSV (default %(default)s)")
    parser.add_argument("--details", action="store_true",
                        help="add Source, N_Ratings, Std, Model_Version, Confidence columns")
    parser.add_argument("--scale", type=float, nargs=2, default=[0.0, 100.0], metavar=("MIN", "MAX"),
                        help="rating scale: scores outside it are refused, predictions clipped to it "
                        "(default 0 100)")
    parser.add_argument("--predictor", choices=PREDICTORS.names(), default=config.predictor,
                        help="predictor (MOS_PREDICTOR; now: %(default)s)")
    _feature_options(parser, config)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run_predict(args: argparse.Namespace, config: Config) -> int:
    from .errors import DatasetError, MissingPathError
    from .evaluation.offline import predict_rest, read_ratings, unknown_images
    from .features.extractor import FeatureExtractor
    from .features.images import list_images
    from .mos_csv import write_csv_file

    if not args.out.parent.is_dir():
        raise MissingPathError(f"output folder {args.out.parent} does not exist")
    scale = _scale(args)
    ratings = read_ratings(args.ratings, scale)
    paths, _ = list_images(args.folder)
    name_of = {path: path.relative_to(args.folder).as_posix() for path in paths}
    unknown = unknown_images(ratings, list(name_of.values()))
    if unknown:
        raise DatasetError(f"{args.ratings}: {len(unknown)} rated image(s) not found in {args.folder}: "
                           f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")
    PREDICTORS.create(args.predictor, config.params_for(args.predictor))  # bad settings fail before extraction
    features = FeatureExtractor.from_config(_with_features(config, args)).extract(paths, progress=not args.no_progress)
    for path, reason in features.failed.items():
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    rows = predict_rest([name_of[p] for p in features.paths], features.features, ratings, args.predictor,
                        config.params_for(args.predictor), scale, [name_of[p] for p in features.failed])
    write_csv_file(rows, args.out, args.details)
    human = sum(row.source == "human" for row in rows)
    print(f"wrote {args.out}: {len(rows)} images ({human} rated, {len(rows) - human} predicted by "
          f"{args.predictor} from the rated ones)")
    return 0


# --- evaluate --------------------------------------------------------------------------------
def _evaluate(commands: argparse._SubParsersAction, config: Config) -> None:
    from .evaluation import DEFAULT_STRATEGY, LABEL_MODES, STRATEGIES

    parser = _command(
        commands, "evaluate", "replay annotation on data with known MOS and report agreement",
        "For each budget, selector, predictor, label mode and strategy, and each seed: label the "
        "budget's images, fit, predict the rest, and compare with the human MOS (SRCC, PLCC after a "
        "4-parameter logistic fit and raw, KRCC, RMSE; plus SRCC between the confidence and the "
        "absolute error). Writes results.json, results.md and srcc.png. Each finished replay (or "
        "--rater-budgets trial) is kept in the output folder until then, so an interrupted run resumes "
        "when run again.", run_evaluate)
    parser.add_argument("dataset", type=Path, help="folder with labels.csv (image,mos[,mos_std]) and the "
                        "images it names")
    parser.add_argument("--labels-csv", default="labels.csv",
                        help="labels file inside DATASET (default %(default)s; the sample dataset's is "
                        "proxy_labels.csv)")
    parser.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder (default %(default)s)")
    parser.add_argument("--budgets", type=int, nargs="+", default=[25, 50, 100, 200],
                        help="numbers of labelled images (default %(default)s)")
    parser.add_argument("--selectors", nargs="+", default=[config.selector],
                        help=f"selectors ({', '.join(SELECTORS.names())}), optionally with parameters, e.g. "
                        "ted:mu=0.1 (default: the product's, MOS_SELECTOR: %(default)s); more than one "
                        "compares them")
    parser.add_argument("--predictors", nargs="+", default=[config.predictor],
                        help=f"predictors ({', '.join(PREDICTORS.names())}), optionally with parameters, e.g. "
                        "similarity:metric=ssim,n_neighbors=3 (default: the product's, MOS_PREDICTOR: "
                        "%(default)s). Rows of the default selector + predictor are marked default, and "
                        "every other configuration is paired with them (difference and standard error)")
    parser.add_argument("--labels", nargs="+", default=["oracle"], choices=LABEL_MODES,
                        help="oracle: the MOS; single: one simulated rater, mos + N(0, mos_std)")
    parser.add_argument("--strategies", nargs="+", default=[DEFAULT_STRATEGY], choices=STRATEGIES,
                        help="stream (default): the product's order, the selector's MOS_REPRESENTATIVES "
                        f"(now: {config.n_representatives}) first, then the least confident image after each "
                        "refit; upfront: the whole budget from the selector; active: half, then the least "
                        "confident images in 4 rounds")
    parser.add_argument("--seeds", type=int, default=5, help="repetitions with different seeds (default %(default)s)")
    pools = parser.add_mutually_exclusive_group()
    pools.add_argument("--subsample", type=float, default=1.0, metavar="FRACTION",
                       help="each seed replays on its own random FRACTION of the images (e.g. 0.8), so that "
                       "deterministic selectors (ted, kcenter) vary too (default 1: all)")
    pools.add_argument("--pool", type=int, metavar="N",
                       help="each seed replays on its own random pool of N images (the protocol for choosing "
                       "methods: e.g. 10 seeds of 400 images)")
    parser.add_argument("--held-out", type=int, default=0, metavar="N",
                        help="each seed sets aside its own random N images that no selector sees and no trial "
                        "rates, and scores every trial on them instead of on the images it left unrated; "
                        "use it to compare strategies, which otherwise each choose the images they are "
                        "scored on (default 0: off). --pool and --subsample then draw from the other images")
    parser.add_argument("--scale", type=float, nargs=2, default=[0.0, 100.0], metavar=("MIN", "MAX"),
                        help="labelling scale for simulated raters (default 0 100)")
    parser.add_argument("--rater-budgets", type=int, nargs="+", metavar="R",
                        help="instead: how to spend R ratings (needs mos_std): 1 rating on R images, 3 on R/3, "
                        "5 on R/5, or mixed (more raters where the model disagrees with the first rating), with "
                        "the product's default selector and predictor; writes budget.json, budget.md, budget.png")
    _feature_options(parser, config)
    parser.set_defaults(grid_defaults={name: parser.get_default(name) for name in GRID_ONLY})


#: evaluate's options that the rater-budget study does not read (it replays the product's default).
GRID_ONLY = ("budgets", "selectors", "predictors", "labels", "strategies", "subsample", "held_out")


def run_evaluate(args: argparse.Namespace, config: Config) -> int:
    from tqdm import tqdm

    from .evaluation import DEFAULT_STRATEGY
    from .evaluation.journal import JOURNAL, Journal
    from .evaluation.replay import Grid, load_dataset, run_grid
    from .evaluation.report import write_report

    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is a file, not a folder")
    if args.rater_budgets:
        given = [f"--{name.replace('_', '-')}" for name in GRID_ONLY if getattr(args, name) != args.grid_defaults[name]]
        if given:
            raise ConfigError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to --rater-budgets "
                              "(it simulates the product's default selector and predictor and scores the whole "
                              "MOS.csv)")
        return _evaluate_rater_budgets(args, config)
    default = (config.selector, config.predictor, DEFAULT_STRATEGY)
    grid = Grid(budgets=args.budgets, selectors=args.selectors, predictors=args.predictors, labels=args.labels,
                strategies=args.strategies, seeds=args.seeds, subsample=args.subsample, pool=args.pool,
                held_out=args.held_out, default=default,
                settings={name: config.params_for(name) for name in PREDICTORS.names()},
                representatives=config.n_representatives).check()
    dataset = load_dataset(args.dataset, _scale(args), args.labels_csv)
    if "single" in grid.labels:
        dataset.spread("single-rater labels")  # before the features: they may take minutes
    dataset, features, _ = _readable(dataset, args, config)
    n_images = len(dataset.paths)
    usable = grid.usable_budgets(n_images)
    skipped = [b for b in grid.budgets if b not in usable]
    if skipped:
        print(f"warning: --budgets {' '.join(map(str, skipped))} skipped: a replay has {grid.replay_images(n_images)} "
              "images, and these leave none of them to score", file=sys.stderr)
    started = time.perf_counter()
    journal = Journal(args.out / JOURNAL, grid.fingerprint(features, dataset))
    with _resumable(journal, "replay") as resumed:
        trials = run_grid(features, dataset, grid, progress=lambda items: tqdm(items, desc="replays"), journal=journal)
    setup = {"dataset": str(args.dataset), "images": n_images, "backbone": args.backbone,
             "max_side": args.max_side, "seeds": args.seeds, "subsample": args.subsample, "pool": args.pool,
             "held_out": args.held_out, "resumed_replays": resumed,
             "default": {"selector": default[0], "predictor": default[1], "strategy": default[2],
                         "representatives": config.n_representatives, "backbone": config.backbone,
                         "max_side": config.max_side},
             "settings": {name: {k: str(v) for k, v in params.items()} for name, params in grid.settings.items()},
             "command": " ".join(sys.argv), "seconds": round(time.perf_counter() - started, 1)}
    parts = []
    if args.pool:
        parts.append(f"each on its own random pool of {args.pool} images")
    elif args.subsample < 1:
        parts.append(f"each on its own random {args.subsample:.0%} of the images"
                     + (" not held out" if args.held_out else ""))
    if args.held_out:
        parts.append(f"{args.held_out} held out per seed")
    subsampled = f" ({'; '.join(parts)})" if parts else ""
    scored = (f"{args.held_out} held-out images per seed that no trial sees or rates" if args.held_out
              else "the images not labelled")
    description = (f"Dataset `{args.dataset}` ({n_images} images), backbone `{args.backbone}`, "
                   f"{args.seeds} seeds{subsampled}; mean ± std over seeds; metrics on {scored}.")
    title = f"{args.dataset.name}: {n_images} images{subsampled}, {args.backbone}"
    print(write_report(args.out, trials, setup, title, description, default,
                       scored="the held-out images" if args.held_out else "the unlabelled images",
                       product_default=(args.backbone, args.max_side) == (config.backbone, config.max_side)))
    journal.close(finished=True)  # the results are written: nothing left to resume
    print(f"\nwrote {args.out / 'results.json'}, {args.out / 'results.md'}, {args.out / 'srcc.png'}")
    return 0


def _evaluate_rater_budgets(args: argparse.Namespace, config: Config) -> int:
    from tqdm import tqdm

    from .evaluation.journal import Journal
    from .evaluation.rater_budget import BUDGET_JOURNAL, BudgetStudy, run_budget_study, write_budget_report
    from .evaluation.replay import load_dataset

    dataset = load_dataset(args.dataset, _scale(args), args.labels_csv)
    study = BudgetStudy(args.rater_budgets, args.seeds, config.selector, config.predictor,
                        {name: config.params_for(name) for name in PREDICTORS.names()}, args.pool,
                        weighted=config.certainty_weights == "on").check(dataset)  # before the features
    dataset, features, _ = _readable(dataset, args, config)
    started = time.perf_counter()
    journal = Journal(args.out / BUDGET_JOURNAL, study.fingerprint(features, dataset))
    with _resumable(journal, "trial") as resumed:
        trials = run_budget_study(features, dataset, study, progress=lambda items: tqdm(items, desc="trials"),
                                  journal=journal)
    setup = {"dataset": str(args.dataset), "images": len(dataset.paths), "backbone": args.backbone,
             "selector": config.selector, "predictor": config.predictor, "seeds": args.seeds, "pool": args.pool,
             "certainty_weights": config.certainty_weights, "resumed_trials": resumed,
             "command": " ".join(sys.argv), "seconds": round(time.perf_counter() - started, 1)}
    pools = f", each seed on its own random {args.pool} images" if args.pool else ""
    title = (f"{args.dataset.name}: {len(dataset.paths)} images{pools}, {args.seeds} seeds, simulated raters "
             f"mos + N(0, mos_std); {config.selector} + {config.predictor}")
    print(write_budget_report(args.out, trials, setup, title))
    journal.close(finished=True)  # the results are written: nothing left to resume
    print(f"\nwrote {args.out / 'budget.json'}, {args.out / 'budget.md'}, {args.out / 'budget.png'}")
    return 0


@contextlib.contextmanager
def _resumable(journal: Journal, noun: str) -> Iterator[int]:
    """Open ``journal`` and yield how many finished ``noun``s it holds from an earlier run, saying
    so; on Ctrl-C say what is kept. The journal is closed, not removed: the caller removes it
    once the results are written."""
    resumed = len(journal.open().done)
    if resumed:
        print(f"resuming: {_count(resumed, noun)} finished earlier read from {journal.path}", file=sys.stderr)
    elif journal.restarted:
        print(f"{journal.path} was written for other inputs: starting over", file=sys.stderr)
    try:
        yield resumed
    except KeyboardInterrupt:
        print(f"\ninterrupted: {_count(len(journal.done), 'finished ' + noun)} kept in {journal.path}; "
              "the same command resumes from there", file=sys.stderr)
        raise
    finally:
        journal.close(finished=False)


# --- train-prior -----------------------------------------------------------------------------
def _train_prior(commands: argparse._SubParsersAction, config: Config) -> None:
    parser = _command(
        commands, "train-prior", "fit a quality prior (a ridge on the features) to a rated dataset",
        "Fit a ridge regression of the MOS on the CNN features of every image of DATASET (labels.csv: "
        "image,mos) and save it as a quality prior file: the ridge predictor's `prior` parameter takes "
        "its path, so that a few labels of a new folder recalibrate what this dataset taught it.",
        run_train_prior)
    parser.add_argument("dataset", type=Path, help="folder with labels.csv and the images it names")
    parser.add_argument("--labels-csv", default="labels.csv", help="labels file inside DATASET (default %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="the prior file to write (.npz)")
    parser.add_argument(
        "--kind-pattern", metavar="REGEX",
        help="also fit one prior per kind of photo, the ridge's extra columns: an image's kind is the first "
             "group of REGEX matched at the start of its file name (the whole match without a group); "
             "images it does not match train the main prior only. The bundled prior used '(ss0[123]) ' "
             "(BIQ2021's gallery, faulty-capture and Unsplash photos)")
    _feature_options(parser, config)


def _kind_of(pattern: str | None) -> Callable[[Path], str | None] | None:
    """The image's kind under ``--kind-pattern`` (None where it does not match); None without one."""
    if pattern is None:
        return None
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--kind-pattern {pattern!r} is not a regular expression: {exc}") from None

    def kind(path: Path) -> str | None:
        match = regex.match(path.name)
        return None if match is None else (match.group(1) if regex.groups else match.group(0))

    return kind


def run_train_prior(args: argparse.Namespace, config: Config) -> int:
    from .evaluation.replay import load_dataset
    from .prediction.prior import copies_for, fit_prior

    if not args.out.parent.is_dir():
        raise UserError(f"output folder {args.out.parent} does not exist")
    kind_of = _kind_of(args.kind_pattern)
    dataset, features, namespace = _readable(load_dataset(args.dataset, labels=args.labels_csv), args, config)
    kinds = None if kind_of is None else [kind_of(path) for path in dataset.paths]
    prior = fit_prior(features, dataset.mos, namespace,
                      f"{args.dataset.name}/{Path(args.labels_csv).name}: {len(dataset.mos)} images", kinds,
                      copies_for(features.shape[1]))
    prior.save(args.out)
    counts = "" if kinds is None else " and one per kind (" + ", ".join(
        f"{name}: {_count(kinds.count(name), 'image')}" for name in prior.kinds) + ")"
    print(f"wrote {args.out}: a prior from {len(dataset.mos)} images{counts}, features {namespace}")
    return 0


def _scale(args: argparse.Namespace) -> tuple[float, float]:
    """``--scale MIN MAX``, refused unless MIN is below MAX."""
    low, high = float(args.scale[0]), float(args.scale[1])
    if not low < high:
        raise ConfigError(f"--scale MIN MAX: MIN must be below MAX, got {low:g} {high:g}")
    return low, high


def _count(n: int, noun: str) -> str:
    """``3 replays``, ``1 replay``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _readable(dataset: Dataset, args: argparse.Namespace, config: Config) -> tuple[Dataset, np.ndarray, str]:
    """The dataset's images whose features could be extracted (each other one named on stderr),
    their feature matrix, and the features' namespace."""
    from .features.extractor import FeatureExtractor

    extractor = FeatureExtractor.from_config(_with_features(config, args))
    features = extractor.extract(dataset.paths)
    for path, reason in features.failed.items():
        print(f"warning: skipped {path}: {reason}", file=sys.stderr)
    return dataset.restricted_to(features.paths), features.features, extractor.namespace


# --- sample ----------------------------------------------------------------------------------
def _sample(commands: argparse._SubParsersAction, config: Config) -> None:
    from .dev.sample_dataset import BLUR_SIGMAS, JPEG_QUALITIES, NOISE_SIGMAS

    parser = _command(
        commands, "sample", "write the sample dataset (photos with distortion ladders)",
        "Write img1..imgN (scikit-image sample photos, each as a reference plus JPEG quality "
        f"{JPEG_QUALITIES}, Gaussian blur sigma {BLUR_SIGMAS} and Gaussian noise sigma {NOISE_SIGMAS}), "
        "manifest.csv (scene, distortion, level) and proxy_labels.csv (image,mos with mos = 100 - 20 * "
        "level: the known order of severity, not human opinion, for trying the evaluate command) into OUT.",
        run_sample)
    parser.add_argument("out", type=Path, help="output folder (created if missing)")
    parser.add_argument("--scenes", type=int, default=None, help="use only the first N scenes, 1 to 6 (default: all 6)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default %(default)s)")


def run_sample(args: argparse.Namespace, config: Config) -> int:
    from .dev.sample_dataset import make_sample_dataset

    rows = make_sample_dataset(args.out, args.scenes, args.seed)
    print(f"wrote {len(rows)} images, manifest.csv and proxy_labels.csv to {args.out}")
    return 0


# --- settings --------------------------------------------------------------------------------
def _settings(commands: argparse._SubParsersAction, config: Config) -> None:
    parser = _command(commands, "settings", "show every setting (environment variable) and its value in effect",
                      "Print every environment variable with the value it has now and whether that comes "
                      "from the environment or is the default (secrets are not shown).", run_settings)
    parser.add_argument("--defaults", action="store_true",
                        help="print the defaults and meanings instead (the README's table)")


def run_settings(args: argparse.Namespace, config: Config) -> int:
    print(settings_table() if args.defaults else effective_table())
    return 0


# --- quickstart ------------------------------------------------------------------------------
def _quickstart(commands: argparse._SubParsersAction, config: Config) -> None:
    parser = _command(
        commands, "quickstart", "run Label Studio + the backend on the sample dataset",
        "Generate the sample dataset, start Label Studio (SQLite) and the ML backend on 127.0.0.1, "
        "seed a project, print the URL and login, and keep serving until Ctrl-C.", run_quickstart_command)
    parser.add_argument("--home", type=Path, default=Path(".mos/quickstart"),
                        help="where data, logs and caches go (default %(default)s)")
    parser.add_argument("--port", type=int, default=8080, help="Label Studio port (default %(default)s; a free "
                        "one is used if busy)")
    parser.add_argument("--backend-port", type=int, default=config.port,
                        help="backend port (MOS_PORT; now: %(default)s; a free one is used if busy)")
    parser.add_argument("--exit-after-seed", action="store_true", help="stop both servers once seeded")


def run_quickstart_command(args: argparse.Namespace, config: Config) -> int:
    from .dev.quickstart import run_quickstart

    low, high = PORT_BOUNDS
    for flag, port in (("--port", args.port), ("--backend-port", args.backend_port)):
        if not low <= port <= high:
            raise ConfigError(f"{flag} must be between {low} and {high}, got {port}")
    return run_quickstart(config, args.home, args.port, args.backend_port, args.exit_after_seed)


# --- benchmark -------------------------------------------------------------------------------
def _benchmark(commands: argparse._SubParsersAction, config: Config) -> None:
    parser = _command(
        commands, "benchmark", "measure speed and memory (run from the repository root)",
        "system (default): feature extraction, the seed against a real Label Studio, /predict over "
        "HTTP, retrain, selection time and memory, on ../shared/data/clive-dev (generated images when "
        "absent). similarity: LPIPS / SSIM / MS-SSIM pairs per second and the cost of scoring a project.",
        run_benchmark_command)
    parser.add_argument("--suite", choices=("system", "similarity", "onnx", "gpu"), default="system",
                        help="what to measure (onnx: EfficientNet-Lite0 through ONNX Runtime beside PyTorch; gpu: "
                        "EfficientNet-Lite0 on a CUDA device in float32, channels-last and float16)")
    system = parser.add_argument_group("system suite")
    system.add_argument("--quick", action="store_true", help="1 repetition, 100 predict requests, no DBSCAN at 100k")
    system.add_argument("--images", type=int, default=400, help="images for the backbone's extraction rows")
    system.add_argument("--backbone", choices=BACKBONES.names(), default=config.backbone,
                        help="the features of the extraction, seed, predict and retrain rows (MOS_BACKBONE; now: "
                        "%(default)s)")
    system.add_argument("--resnet-images", type=int, default=100, help="images for resnet50 (slow on CPU)")
    system.add_argument("--export-tasks", type=int, default=5000,
                        help="annotated tasks for the export timing (0: skip)")
    system.add_argument("--store-vectors", type=int, default=0,
                        help="also write and read back this many synthetic vectors in the feature store (e.g. "
                        "1000000: 8 GB of temporary disk)")
    system.add_argument("--selection-rows", type=int, default=0,
                        help="also run faiss-kmeans and faiss-ted on this many synthetic float16 rows memory-mapped "
                        "from disk (e.g. 1000000: 8 GB of temporary disk)")
    system.add_argument("--skip", nargs="*", default=[],
                        choices=["extraction", "ray", "seed", "latency", "predict", "retrain", "selection"])
    similarity = parser.add_argument_group("similarity suite")
    similarity.add_argument("--queries", type=int, default=20, help="measured queries per setting")
    similarity.add_argument("--size", type=int, default=256, help="comparison size")
    similarity.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")


def run_benchmark_command(args: argparse.Namespace, config: Config) -> int:
    if args.suite == "gpu":
        from .dev.benchmark import CLIVE
        from .dev.benchmark_gpu import run_gpu_benchmark

        run_gpu_benchmark(CLIVE)
    elif args.suite == "onnx":
        from .dev.benchmark import CLIVE
        from .dev.benchmark_onnx import run_onnx_benchmark

        run_onnx_benchmark(CLIVE)
    elif args.suite == "similarity":
        from .dev.benchmark_similarity import run_similarity_benchmark

        run_similarity_benchmark(args.queries, args.size, args.threads)
    else:
        from .dev.benchmark import run_benchmark

        run_benchmark(args.quick, args.images, args.resnet_images, args.export_tasks, frozenset(args.skip),
                      store_vectors=args.store_vectors, selection_rows=args.selection_rows, backbone=args.backbone)
    return 0


def serve_main() -> int:
    """``python -m ml_backend``: the backend with its settings (``serve`` and its options)."""
    return main(["serve", *sys.argv[1:]])
