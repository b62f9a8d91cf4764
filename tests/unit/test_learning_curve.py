import numpy as np

from ml_backend.evaluation.learning_curve import LearningCurve, learning_curve
from ml_backend.evaluation.metrics import split_half_srcc


def test_agreement_grows_with_ratings_and_the_fit_says_what_more_would_add() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 40))
    y = X[:, :10].sum(axis=1) + rng.normal(scale=1.0, size=120)
    curve = learning_curve(X, y, prior="none")
    assert curve.sizes[0] == 10 and curve.sizes[-1] == 120
    assert curve.srcc_mean[-1] > curve.srcc_mean[0] + 0.2  # more ratings, better held-out agreement
    assert curve.fit is not None
    more = curve.more_for(0.02)
    assert more is None or more > 0


def test_a_flat_curve_says_more_ratings_add_little() -> None:
    flat = LearningCurve([10, 20, 40, 80], [0.80, 0.81, 0.81, 0.81], [0.0] * 4, fit=(0.81, 0.01, 1.0))
    assert flat.more_for(0.02) is None
    rising = LearningCurve([10, 20, 40, 80], [0.4, 0.5, 0.6, 0.7], [0.0] * 4, fit=(0.95, 1.2, 0.5))
    a, b, c = rising.fit
    target = a - b * 80 ** -c + 0.02
    assert rising.more_for(0.02) == int(np.ceil((b / (a - target)) ** (1 / c))) - 80


def test_split_half_agreement_of_raters() -> None:
    rng = np.random.default_rng(1)
    truth = rng.uniform(0, 100, size=40)
    agree = {i: list(t + rng.normal(scale=5, size=4)) for i, t in enumerate(truth)}
    noise = {i: list(rng.uniform(0, 100, size=4)) for i in range(40)}
    assert split_half_srcc(agree)[0] > 0.9 and abs(split_half_srcc(noise)[0]) < 0.4
    assert split_half_srcc({1: [3.0, 4.0]}) is None  # too few images with several raters
