#!/usr/bin/env python
"""Seed a Label Studio project with an image folder, representative images first."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from ml_backend.backbones import BACKBONES
from ml_backend.config import Config
from ml_backend.images import ImageReadError
from ml_backend.label_config import LabelConfigError
from ml_backend.ls_client import LabelStudioClient, LabelStudioError
from ml_backend.seeding import SeedError, SeedOptions, seed_project
from ml_backend.selectors import SELECTORS

LABEL_CONFIGS = Path(__file__).resolve().parents[1] / "label_config"


def parse_args(argv: list[str] | None, config: Config) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Extract CNN features of every image in FOLDER (cached), pick representative "
        "images, create (or reuse) a Label Studio project and import every image not yet in it, "
        "representatives first, then connect the ML backend. Defaults come from the environment "
        "variables listed by `python -m ml_backend --settings`.",
    )
    parser.add_argument("folder", type=Path, help="image folder (searched recursively); must lie "
                        "inside LOCAL_FILES_DOCUMENT_ROOT")
    ls = parser.add_argument_group("Label Studio")
    ls.add_argument("--url", default=config.label_studio_url or "http://localhost:8080",
                    help="Label Studio URL (LABEL_STUDIO_URL; default %(default)s)")
    ls.add_argument("--api-key", default=config.label_studio_api_key,
                    help="Label Studio token (LABEL_STUDIO_API_KEY)")
    ls.add_argument("--document-root", type=Path, default=config.document_root,
                    help="Label Studio's LOCAL_FILES_DOCUMENT_ROOT (default: that variable)")
    ls.add_argument("--title", help="project title (default: 'MOS <folder name>'); an existing "
                    "project with this title is reused")
    ls.add_argument("--project-id", type=int, help="add to this existing project instead")
    ls.add_argument("--label-config", type=Path, default=LABEL_CONFIGS / "number_0_100.xml",
                    help="labeling config XML for a new project (default: %(default)s; "
                    f"also {LABEL_CONFIGS / 'rating_1_5.xml'})")
    ls.add_argument("--raters", type=int, help="annotations wanted per image (MOS = their mean); "
                    "default 1 for a new project")
    ls.add_argument("--backend-url", default=config.backend_url or None,
                    help="ML backend URL as Label Studio reaches it (MOS_BACKEND_URL); omit to "
                    "connect it later in the UI")
    sel = parser.add_argument_group("selection")
    sel.add_argument("--selector", choices=SELECTORS.names(), default="ted",
                     help="how representatives are picked (default %(default)s)")
    sel.add_argument("-n", "--n-representatives", type=int,
                     help="number of representatives (default 20; DBSCAN default: one "
                     "per cluster)")
    sel.add_argument("--eps", type=float, help="DBSCAN eps (default: chosen from the data)")
    sel.add_argument("--min-samples", type=int, default=5, help="DBSCAN min_samples (default 5)")
    sel.add_argument("--include-outliers", action="store_true",
                     help="DBSCAN: also make outlier images representatives")
    sel.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    feat = parser.add_argument_group("features")
    feat.add_argument("--backbone", choices=BACKBONES.names(), default=config.backbone,
                      help="CNN backbone (MOS_BACKBONE; default %(default)s)")
    feat.add_argument("--cache-dir", type=Path, default=config.cache_dir,
                      help="feature cache (MOS_CACHE_DIR; default %(default)s)")
    feat.add_argument("--max-side", type=int, default=config.max_side,
                      help="downscale images whose longer side exceeds this (MOS_MAX_SIDE; "
                      "default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def selector_params(args: argparse.Namespace) -> dict:
    if args.selector == "dbscan":
        return {"eps": args.eps, "min_samples": args.min_samples, "n_select": args.n_representatives,
                "include_outliers": args.include_outliers}
    return {"n_select": args.n_representatives or 20, "random_state": args.seed}


def main(argv: list[str] | None = None) -> int:
    try:
        config = Config.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = parse_args(argv, config)
    if args.document_root is None:
        print("error: set LOCAL_FILES_DOCUMENT_ROOT or pass --document-root", file=sys.stderr)
        return 2
    backbone_params = dataclasses.replace(config, backbone=args.backbone).backbone_params()
    options = SeedOptions(
        folder=args.folder, document_root=args.document_root, label_config=args.label_config,
        title=args.title, project_id=args.project_id, selector=args.selector,
        selector_params=selector_params(args), backbone=args.backbone,
        backbone_params=backbone_params, cache_dir=args.cache_dir, max_side=args.max_side,
        backend_url=args.backend_url, raters=args.raters, progress=not args.no_progress,
        backend_auth=(config.basic_auth_user, config.basic_auth_pass)
        if config.basic_auth_user and config.basic_auth_pass else None,
    )
    try:
        client = LabelStudioClient(args.url, args.api_key)
        report = seed_project(client, options)
    except (SeedError, LabelStudioError, LabelConfigError, ImageReadError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"project:          {report.project_url} (id {report.project_id}, "
          f"{'created' if report.created else 'existing'})")
    print(f"images:           {report.n_images} readable, {report.n_imported} imported, "
          f"{report.n_already_present} already in the project")
    print(f"representatives:  {len(report.representatives)} from {report.n_clusters} clusters "
          f"({args.selector}): {', '.join(report.representatives[:10])}"
          f"{' ...' if len(report.representatives) > 10 else ''}")
    print(f"ML backend:       {report.backend}")
    if report.skipped:
        print(f"skipped:          {len(report.skipped)} file(s)")
        for name, reason in sorted(report.skipped.items()):
            print(f"  {name}: {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
