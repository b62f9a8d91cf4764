import math

import pytest

from ml_backend.labelstudio.label_config import PRECISE_KEY, LabelConfigError, ScoreTag, blind, parse_label_config
from tests.helpers import REPO

CONFIGS = REPO / "label_config"


def number_tag(minimum: float | None = 0, maximum: float | None = 100, step: float = 1) -> ScoreTag:
    return ScoreTag("number", "mos", "image", "image", minimum, maximum, step)


def config(control: str, image: str = '<Image name="image" value="$image"/>') -> str:
    return f"<View>{image}{control}</View>"


def editor_accepts(tag: ScoreTag, value: float) -> bool:
    """Label Studio's own Number/Rating check: in range and within 1e-8 of the step grid."""
    base = tag.minimum if tag.minimum is not None else 0
    nearest = round((value - base) / tag.step) * tag.step + base
    in_range = (tag.minimum is None or value >= tag.minimum) and (
        tag.maximum is None or value <= tag.maximum
    )
    return in_range and abs(value - nearest) <= 1e-8


def test_shipped_number_config() -> None:
    xml = (CONFIGS / "number_0_100.xml").read_text()
    assert parse_label_config(xml) == ScoreTag("number", "mos", "image", "image", 0.0, 100.0, 1.0, suggestion=True)
    assert parse_label_config(blind(xml)) == ScoreTag("number", "mos", "image", "image", 0.0, 100.0, 1.0)


def test_shipped_rating_config() -> None:
    xml = (CONFIGS / "rating_1_5.xml").read_text()
    assert parse_label_config(xml) == ScoreTag("rating", "rating", "image", "image", 1.0, 5.0, 1.0, suggestion=True)
    assert parse_label_config(blind(xml)).suggestion is False
    assert "defaultZoom=\"auto\"" in blind(xml)  # the rest of the view stays: never upscaled


def test_suggest_mode_shows_a_line_and_leaves_the_score_to_the_rater() -> None:
    xml = (CONFIGS / "number_0_100.xml").read_text()
    (item,) = parse_label_config(xml).prediction_result(56.37, 0.4213, "ridge-v3")
    assert (item["from_name"], item["type"]) == ("suggestion", "textarea")
    assert item["value"] == {"text": ["model ridge-v3: 56 · confidence 0.42"]}
    assert item[PRECISE_KEY] == {"mos": 56.37, "confidence": 0.4213}
    (score,) = parse_label_config(blind(xml)).prediction_result(56.37, 0.4213, "ridge-v3")
    assert (score["from_name"], score["value"]) == ("mos", {"number": 56})


def test_rating_defaults_to_five_stars_and_first_score_tag_wins() -> None:
    tag = parse_label_config(
        config('<Rating name="r" toName="image"/><Number name="n" toName="image"/>')
    )
    assert (tag.kind, tag.from_name, tag.maximum) == ("rating", "r", 5.0)


def test_number_without_limits_is_unbounded_with_step_one() -> None:
    tag = parse_label_config(config('<Number name="n" toName="image"/>'))
    assert (tag.minimum, tag.maximum, tag.step) == (None, None, 1.0)
    assert tag.round(-12.4) == -12 and tag.round(1e6 + 0.6) == 1_000_001


def test_data_key_comes_from_the_image_variable() -> None:
    tag = parse_label_config(
        config('<Rating name="q" toName="photo"/>', '<Image name="photo" value="$url"/>')
    )
    assert (tag.to_name, tag.data_key) == ("photo", "url")


@pytest.mark.parametrize(("value", "expected"), [(0.4, 1), (7, 5), (3.6, 4), (2.5, 3), (-3, 1)])
def test_rating_rounds_to_whole_stars_within_range(value: float, expected: int) -> None:
    tag = parse_label_config((CONFIGS / "rating_1_5.xml").read_text())
    rounded = tag.round(value)
    assert rounded == expected and isinstance(rounded, int)


@pytest.mark.parametrize(
    ("minimum", "maximum", "step", "value", "expected"),
    [
        (0, 100, 1, 63.4, 63),
        (0, 100, 1, 101.2, 100),
        (0, 100, 1, -5, 0),
        (0, 100, 5, 63, 65),
        (0, 100, 5, 62.4, 60),
        (1, 10, 2, 4.2, 5),  # grid 1, 3, 5, 7, 9 starts at min, not at 0
        (1, 10, 2, 10, 9),  # max is off the grid: largest grid value below it
        (0, 1, 0.1, 0.3, 0.3),
        (0, 1, 0.1, 0.66, 0.7),
        (0, 1, 0.1, 7, 1.0),
        (0, 10, 0.25, 3.38, 3.5),
        (0, 10, 0.5, 7.74, 7.5),
        (0.1, 5, 0.25, 1.0, 1.1),
        (-1, 1, 0.1, -0.34, -0.3),
    ],
)
def test_number_rounds_onto_the_step_grid_inside_range(
    minimum: float, maximum: float, step: float, value: float, expected: float
) -> None:
    tag = number_tag(minimum, maximum, step)
    rounded = tag.round(value)
    assert rounded == pytest.approx(expected, abs=1e-12)
    assert editor_accepts(tag, rounded)
    assert tag.round(rounded) == rounded  # idempotent: rounding a rounded value changes nothing


@pytest.mark.parametrize("step", [0.1, 0.25, 0.5, 5])
def test_every_rounded_number_passes_the_editor_check(step: float) -> None:
    tag = number_tag(0, 100, step)
    for i in range(1001):
        value = -3 + i * 0.10637
        rounded = tag.round(value)
        remainder = math.fmod(rounded - tag.minimum, step)
        assert min(remainder, step - remainder) < 1e-9
        assert editor_accepts(tag, rounded)
        assert isinstance(rounded, int) == float(step).is_integer()


def test_round_rejects_nan() -> None:
    with pytest.raises(ValueError, match="nan"):
        number_tag().round(float("nan"))


def test_to_result_has_label_studio_shape() -> None:
    number = parse_label_config((CONFIGS / "number_0_100.xml").read_text())
    assert number.to_result(63.4) == [
        {"from_name": "mos", "to_name": "image", "type": "number", "value": {"number": 63}}
    ]
    rating = parse_label_config((CONFIGS / "rating_1_5.xml").read_text())
    assert rating.to_result(4.2) == [
        {"from_name": "rating", "to_name": "image", "type": "rating", "value": {"rating": 4}}
    ]


def test_read_finds_this_tags_value_and_ignores_others() -> None:
    tag = parse_label_config((CONFIGS / "number_0_100.xml").read_text())
    result = [
        {"from_name": "comment", "to_name": "image", "type": "textarea", "value": {"text": ["ok"]}},
        {"from_name": "mos", "to_name": "image", "type": "number", "value": {"number": 63}},
    ]
    assert tag.read(result) == 63.0
    assert tag.read(tag.to_result(41.7)) == 42.0
    assert tag.read([]) is None
    assert tag.read([{"from_name": "mos", "value": {}}]) is None
    assert tag.read([{"from_name": "other", "value": {"number": 5}}]) is None


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        ("<View><Image name='image' value='$image'>", "not valid XML"),
        ("", "not valid XML"),
        (config('<Choices name="c" toName="image"/>'), "no <Rating> or <Number>"),
        (config('<Rating name="r" toName="img"/>'), "no <Image name='img'>"),
        (config('<Rating name="r"/>'), "needs both name and toName"),
        (config('<Rating name="r" toName="image"/>', '<Image name="image" value="img"/>'),
         "must be a \\$variable"),
        (config('<Rating name="r" toName="image" maxRating="4.5"/>'), "maxRating"),
        (config('<Number name="n" toName="image" step="0"/>'), "step must be positive"),
        (config('<Number name="n" toName="image" min="5" max="1"/>'), "below min"),
        (config('<Number name="n" toName="image" max="lots"/>'), "max='lots' is not a number"),
        (config('<Number name="n" toName="image" max="1e308"/>'), "max='1e308' is not a finite number"),
        (config('<Number name="n" toName="image" min="-inf"/>'), "min='-inf' is not a finite number"),
        (config('<Number name="n" toName="image" step="1e-300"/>'), "step must be at least"),
        (config('<Rating name="r" toName="image" maxRating="1e300"/>'), "maxrating='1e300' is not a finite"),
    ],
)
def test_unusable_configs_raise_one_line_label_config_errors(xml: str, message: str) -> None:
    with pytest.raises(LabelConfigError, match=message) as info:
        parse_label_config(xml)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)
