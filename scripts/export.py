#!/usr/bin/env python
"""Write MOS.csv for a Label Studio project: human mean where rated, newest prediction elsewhere."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ml_backend.aggregation import aggregate_ratings
from ml_backend.config import Config
from ml_backend.exporting import build_rows, write_csv_file
from ml_backend.label_config import LabelConfigError, parse_label_config
from ml_backend.ls_client import LabelStudioClient, LabelStudioError


def parse_args(argv: list[str] | None, config: Config) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Export Image_Name,MOS for every task of a project, sorted numerically by "
        "image name (img2 before img10). MOS is the mean over raters where people rated the "
        "image (cancelled annotations ignored; a rater's latest annotation counts) and the "
        "newest prediction elsewhere. Images with neither are listed on stderr.",
    )
    parser.add_argument("--project-id", type=int, required=True, help="Label Studio project id")
    parser.add_argument("--out", type=Path, default=Path("MOS.csv"), help="output CSV (default %(default)s)")
    parser.add_argument("--details", action="store_true",
                        help="add Source (human/predicted), N_Ratings, Std, Model_Version columns")
    parser.add_argument("--no-refresh", action="store_true",
                        help="do not ask the connected ML backend (through Label Studio) for "
                        "predictions of unrated images first; use only stored predictions")
    parser.add_argument("--url", default=config.label_studio_url or "http://localhost:8080",
                        help="Label Studio URL (LABEL_STUDIO_URL; default %(default)s)")
    parser.add_argument("--api-key", default=config.label_studio_api_key,
                        help="Label Studio token (LABEL_STUDIO_API_KEY)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:
        config = Config.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args = parse_args(argv, config)
    try:
        client = LabelStudioClient(args.url, args.api_key)
        client.check()
        tag = parse_label_config(client.get_label_config(args.project_id))
        tasks = client.export_tasks(args.project_id)
        if not args.no_refresh and client.ml_backends(args.project_id):
            rated = aggregate_ratings(tasks, tag)
            unrated = [task["id"] for task in tasks if task["id"] not in rated]
            client.retrieve_predictions(args.project_id, unrated)
        rows, missing = build_rows(tasks, client.predictions(args.project_id), tag)
        write_csv_file(rows, args.out, args.details)
    except (LabelStudioError, LabelConfigError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    human = sum(row.source == "human" for row in rows)
    print(f"wrote {args.out}: {len(rows)} images ({human} rated by people, "
          f"{len(rows) - human} predicted)")
    if missing:
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        print(f"warning: {len(missing)} image(s) have neither a rating nor a prediction and are "
              f"not in the CSV: {shown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
