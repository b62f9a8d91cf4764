"""Replay annotation on data with known MOS and report how well predictions agree with people."""

LABEL_MODES = ("oracle", "single")
#: ``stream`` first: the order the product hands out images (the evaluate command's default).
STRATEGIES = ("stream", "upfront", "active")
