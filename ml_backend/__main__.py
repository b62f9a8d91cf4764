"""Run the ML backend: ``python -m ml_backend`` (settings from environment variables)."""
from __future__ import annotations

import argparse
import logging
import sys

from .config import Config, settings_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml_backend",
        description="MOS Annotator ML backend for Label Studio. Every setting is an environment "
        "variable; --settings lists them.",
    )
    parser.add_argument("--settings", action="store_true", help="print the settings table and exit")
    args = parser.parse_args(argv)
    if args.settings:
        print(settings_table())
        return 0
    try:
        config = Config.from_env()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per SDK call drowns the story
    from waitress import serve

    from .app import create_app

    app = create_app(config)
    logging.getLogger("ml_backend").info(
        "MOS backend on http://%s:%s (backbone %s, predictor %s %s, state %s)",
        config.host, config.port, config.backbone, config.predictor,
        config.params_for(config.predictor), config.state_dir,
    )
    serve(app, host=config.host, port=config.port, threads=8, ident="mos-annotator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
