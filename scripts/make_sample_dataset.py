#!/usr/bin/env python
"""Generate the sample dataset (scikit-image photos with JPEG, blur and noise ladders)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ml_backend.sample_dataset import BLUR_SIGMAS, JPEG_QUALITIES, NOISE_SIGMAS, make_sample_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write img1..imgN (scikit-image sample photos, each as a reference plus "
        f"JPEG quality {JPEG_QUALITIES}, Gaussian blur sigma {BLUR_SIGMAS} and Gaussian noise "
        f"sigma {NOISE_SIGMAS}), manifest.csv (scene, distortion, level) and proxy_labels.csv "
        "(image,mos with mos = 100 - 20 * level: the known order of severity, not human opinion, "
        "for trying the evaluate command) into OUT."
    )
    parser.add_argument("out", type=Path, help="output folder (created if missing)")
    parser.add_argument("--scenes", type=int, default=None, help="use only the first N scenes (default: all 6)")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    args = parser.parse_args(argv)
    rows = make_sample_dataset(args.out, args.scenes, args.seed)
    print(f"wrote {len(rows)} images, manifest.csv and proxy_labels.csv to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
