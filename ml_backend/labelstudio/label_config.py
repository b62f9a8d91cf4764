"""Read the score control (Rating or Number) out of a Label Studio labeling config.

Predictions must be values the Label Studio editor accepts, so ``ScoreTag.round`` mirrors the
editor's checks: whole stars for Rating; for Number, within [min, max] and on the step grid.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

from ..errors import LabelConfigError, MissingPathError

SCORE_TAGS = ("rating", "number")
#: Bounds on a config's numbers: beyond them rounding onto the step grid loses all precision.
MAX_MAGNITUDE = 1e9
MIN_STEP = 1e-6
#: The configs that ship with the package (``label_config/`` in the repository).
BUNDLED = ("number_0_100.xml", "rating_1_5.xml")


def bundled_config(name: str) -> Path:
    """Path of a shipped labeling config, wherever the package is installed."""
    return Path(str(files("ml_backend.labelstudio") / "configs" / name))


def read_label_config(path: Path) -> str:
    """The XML text of a labeling config file; MissingPathError naming it if it cannot be read."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise MissingPathError(f"label config {path}: {exc.strerror or exc}") from None


#: Key of a predicted result item that holds the model's unrounded value (``{"mos": 56.37}``).
PRECISE_KEY = "mos_annotator"
#: Name of the read-only TextArea that shows the model's suggestion (suggest mode).
SUGGESTION = "suggestion"


@dataclass(frozen=True)
class ScoreTag:
    """The control that holds the score, with the limits a prediction must respect.

    For Rating: minimum 1, maximum ``maxRating`` (default 5), step 1. For Number: ``min``/``max``
    are None when absent (no bound), step defaults to 1 as in the editor's input; the step grid
    starts at ``min``, or at 0 without one, exactly as the editor validates. ``suggestion``: the
    config has a ``<TextArea name="suggestion">`` on the same image (suggest mode).
    """

    kind: str
    from_name: str
    to_name: str
    data_key: str
    minimum: float | None
    maximum: float | None
    step: float
    suggestion: bool = False

    def round(self, value: float) -> int | float:
        """Nearest value the editor accepts: on the step grid, inside [minimum, maximum]."""
        if not math.isfinite(value):
            raise ValueError(f"cannot turn {value} into a {self.kind} score")
        base = self.minimum if self.minimum is not None else 0.0
        steps = math.floor((float(value) - base) / self.step + 0.5)  # half up, not half even
        if self.minimum is not None:
            steps = max(steps, 0)
        if self.maximum is not None:
            steps = min(steps, math.floor((self.maximum - base) / self.step + 1e-9))
        rounded = base + steps * self.step
        decimals = max(_decimals(self.step), _decimals(base))
        if decimals == 0:
            return int(round(rounded))
        return round(rounded, decimals)

    def clip(self, value: float) -> float:
        """``value`` inside [minimum, maximum] (no rounding)."""
        low = self.minimum if self.minimum is not None else -math.inf
        high = self.maximum if self.maximum is not None else math.inf
        return float(min(max(value, low), high))

    def prediction_result(self, value: float, confidence: float, version: str) -> list[dict[str, Any]]:
        """A prediction's result list. Suggest mode: only a line of text under the score control
        ("model ridge-v3: 56 · confidence 0.42"), which stays empty for the rater to fill;
        otherwise the score itself (the editor pre-fills it). Either way the model's unrounded
        value rides along under ``PRECISE_KEY`` for the export."""
        shown = self.round(value)
        if self.suggestion:
            text = f"model {version}: {shown}{'' if self.kind == 'number' else ' stars'} · confidence {confidence:.2f}"
            result = [{"from_name": SUGGESTION, "to_name": self.to_name, "type": "textarea",
                       "value": {"text": [text]}}]
        else:
            result = self.to_result(shown)
        result[0][PRECISE_KEY] = {"mos": round(self.clip(value), 4), "confidence": round(confidence, 4)}
        return result

    def read_precise(self, result: list[dict[str, Any]]) -> float | None:
        """A prediction's unrounded value (``PRECISE_KEY``), else its score as ``read`` finds it."""
        value = _precise(result, "mos")
        return value if value is not None else self.read(result)

    def to_result(self, value: float) -> list[dict[str, Any]]:
        """Label Studio result list for a predicted score (rounded first, so it is accepted)."""
        return [
            {
                "from_name": self.from_name,
                "to_name": self.to_name,
                "type": self.kind,
                "value": {self.kind: self.round(value)},
            }
        ]

    def read(self, result: list[dict[str, Any]]) -> float | None:
        """This tag's score in an annotation's result list; None if it has none."""
        for item in result:
            if item.get("from_name") != self.from_name:
                continue
            value = (item.get("value") or {}).get(self.kind)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return None


def _precise(result: list[dict[str, Any]], key: str) -> float | None:
    for item in result:
        precise = item.get(PRECISE_KEY) if isinstance(item, dict) else None
        value = precise.get(key) if isinstance(precise, dict) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
    return None


def read_confidence(prediction: dict[str, Any]) -> float | None:
    """The model's confidence in a prediction: the one it stored under ``PRECISE_KEY`` (the
    ``score`` carries the stream's order instead, see ``rate_next``), else the ``score``."""
    confidence = _precise(prediction.get("result") or [], "confidence")
    score = prediction.get("score")
    if confidence is None and isinstance(score, (int, float)) and not isinstance(score, bool):
        confidence = float(score)
    return confidence


def parse_label_config(xml: str) -> ScoreTag:
    """The first Rating or Number tag of the config, tied to the Image it scores."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise LabelConfigError(f"label config is not valid XML: {exc}") from None
    # Label Studio matches tag and attribute names case-insensitively (toName == toname).
    elements = [(el.tag.lower(), {k.lower(): v for k, v in el.items()}) for el in root.iter()]
    control = next(((tag, attrs) for tag, attrs in elements if tag in SCORE_TAGS), None)
    if control is None:
        raise LabelConfigError("label config has no <Rating> or <Number> tag to hold the score")
    kind, attrs = control
    tag_name = kind.capitalize()
    from_name, to_name = attrs.get("name"), attrs.get("toname")
    if not from_name or not to_name:
        raise LabelConfigError(f"<{tag_name}> needs both name and toName attributes")
    image = next((a for t, a in elements if t == "image" and a.get("name") == to_name), None)
    if image is None:
        raise LabelConfigError(
            f"<{tag_name} name={from_name!r}> scores toName={to_name!r}, "
            f"but there is no <Image name={to_name!r}>"
        )
    value = image.get("value", "")
    if not value.startswith("$") or len(value) < 2:
        raise LabelConfigError(f"<Image name={to_name!r}> value must be a $variable, got {value!r}")
    if kind == "rating":
        max_rating = _number(attrs, "maxrating", "5")
        if max_rating < 1 or not max_rating.is_integer():
            raise LabelConfigError(f"<Rating> maxRating must be a whole number >= 1: {max_rating}")
        minimum, maximum, step = 1.0, max_rating, 1.0
    else:
        minimum, maximum = _optional_number(attrs, "min"), _optional_number(attrs, "max")
        step = _number(attrs, "step", "1")
        if step <= 0:
            raise LabelConfigError(f"<Number> step must be positive, got {step}")
        if step < MIN_STEP:
            raise LabelConfigError(f"<Number> step must be at least {MIN_STEP:g}, got {step:g}")
        if minimum is not None and maximum is not None and maximum < minimum:
            raise LabelConfigError(f"<Number> max ({maximum}) is below min ({minimum})")
    suggestion = any(tag == "textarea" and a.get("name") == SUGGESTION and a.get("toname") == to_name
                     for tag, a in elements)
    return ScoreTag(kind, from_name, to_name, value[1:], minimum, maximum, step, suggestion)


def blind(xml: str) -> str:
    """The config without its suggestion line (blind mode: the rater sees no model output)."""
    root = ET.fromstring(xml)
    for parent in root.iter():
        for child in list(parent):
            if child.tag.lower() == "textarea" and child.get("name") == SUGGESTION:
                parent.remove(child)
    return ET.tostring(root, encoding="unicode")


def _number(attrs: dict[str, str], key: str, default: str) -> float:
    raw = attrs.get(key, default)
    try:
        number = float(raw)
    except ValueError:
        raise LabelConfigError(f"attribute {key}={raw!r} is not a number") from None
    if not math.isfinite(number) or abs(number) > MAX_MAGNITUDE:
        raise LabelConfigError(f"attribute {key}={raw!r} is not a finite number within ±{MAX_MAGNITUDE:g}")
    return number


def _optional_number(attrs: dict[str, str], key: str) -> float | None:
    return _number(attrs, key, "") if key in attrs else None


def _decimals(number: float) -> int:
    """Decimal places of a config number as written (0.25 -> 2, 5.0 -> 0)."""
    exponent = Decimal(repr(number)).normalize().as_tuple().exponent
    return max(0, -int(exponent))
