"""``python -m ml_backend``: the same as ``mos-annotator serve``."""
import sys

from .cli import serve_main

sys.exit(serve_main())
