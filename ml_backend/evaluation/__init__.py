"""Replay annotation on data with known MOS and report how well predictions agree with people."""

LABEL_MODES = ("oracle", "single")
STRATEGIES = ("upfront", "active")
