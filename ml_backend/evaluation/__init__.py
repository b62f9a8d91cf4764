"""Replay annotation on data with known MOS and report how well predictions agree with people."""

LABEL_MODES = ("oracle", "single")
#: The order the product's label stream hands out images: the evaluate command's default.
DEFAULT_STRATEGY = "stream"
STRATEGIES = (DEFAULT_STRATEGY, "upfront", "active")
