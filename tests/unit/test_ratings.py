"""Screening methods and the subject model on synthetic ratings with known bias and inconsistency,
checked against Netflix sureal where it implements the same method."""
from __future__ import annotations

import contextlib
import io
import types
import warnings

import numpy as np
import pytest

from ml_backend.ratings import SCREENINGS
from ml_backend.ratings.screening import gold_rejections, mean_and_interval
from ml_backend.ratings.subject_model import fit_subject_model
from ml_backend.ratings.votes import Vote, VoteTable


def study(images: int, bias: list[float], noise: list[float], seed: int = 0, missing: float = 0.0,
          random_raters: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores of raters with these biases and inconsistencies (std) around a true quality, plus
    raters who answer uniformly at random on 0-100."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(20, 80, images)
    x = truth[:, None] + np.array(bias) + np.array(noise) * rng.normal(size=(images, len(bias)))
    x = np.column_stack([x] + [rng.uniform(0, 100, images) for _ in range(random_raters)])
    x[rng.random(x.shape) < missing] = np.nan
    return x, truth


def table(x: np.ndarray) -> VoteTable:
    return VoteTable(list(range(len(x))), [f"r{r:02d}" for r in range(x.shape[1])], x)


def sureal_result(model: type, x: np.ndarray) -> dict:
    from sureal.dataset_reader import RawDatasetReader

    videos = [{"content_id": e, "asset_id": e, "path": str(e),
               "os": {f"r{s:02d}": x[e, s] for s in range(x.shape[1]) if not np.isnan(x[e, s])}} for e in range(len(x))]
    references = [{"content_id": e, "content_name": str(e), "path": str(e)} for e in range(len(x))]
    dataset = types.SimpleNamespace(dataset_name="synthetic", dis_videos=videos, ref_videos=references)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model(RawDatasetReader(dataset)).run_modeling()


def test_student_interval_matches_a_hand_computation() -> None:
    n, mos, std, ci95 = mean_and_interval(np.array([[60.0, 80.0, 70.0], [40.0, np.nan, np.nan]]))
    assert n.tolist() == [3, 1] and mos.tolist() == [70.0, 40.0]
    assert std[0] == pytest.approx(10.0) and np.isnan(std[1])
    assert ci95[0] == pytest.approx(4.302653 * 10 / np.sqrt(3), abs=1e-4) and np.isnan(ci95[1])


def test_subject_model_recovers_known_bias_and_inconsistency() -> None:
    bias, noise = [6.0, -4.0, 0.0, -2.0, 0.0], [3.0, 6.0, 12.0, 4.0, 8.0]
    fits = [(fit_subject_model(x), x, truth) for x, truth in (study(300, bias, noise, seed=s, missing=0.1)
                                                              for s in range(5))]
    assert np.mean([m.inconsistency for m, _, _ in fits], axis=0) == pytest.approx(noise, rel=0.06)
    model, x, truth = fits[0]
    assert model.bias == pytest.approx(np.array(bias) - np.mean(bias), abs=1.0)
    assert np.corrcoef(model.quality, truth)[0, 1] > 0.99
    # the interval shrinks with the raters' precision: images with all five are the narrowest
    full = np.sum(~np.isnan(x), axis=1) == 5
    assert model.quality_ci95[full].max() < model.quality_ci95[~full].max()


def test_plain_maximum_likelihood_is_sureals_and_ours_avoids_its_collapse() -> None:
    """residual_dof=False is sureal's content-oblivious MLE (P.910 Annex E) to 1e-3 on a table it
    solves; with 3 raters sureal lets one rater's inconsistency fall to 0 (every image's quality
    becomes that rater's scores), while the residual degrees of freedom keep it and track the
    truth better."""
    sureal_models = pytest.importorskip("sureal.subjective_model", reason="sureal is a dev dependency")
    mle = sureal_models.MaximumLikelihoodEstimationModelContentOblivious
    rng = np.random.default_rng(0)
    x, _ = study(100, list(rng.normal(0, 5, 20)), list(rng.uniform(3, 12, 20)), seed=0)
    theirs = sureal_result(mle, x)
    assert min(theirs["observer_inconsistency"]) > 1  # a table sureal solves without a collapse
    plain = fit_subject_model(x, residual_dof=False, tol=1e-9)
    assert plain.quality == pytest.approx(theirs["quality_scores"], abs=1e-3)
    assert plain.bias == pytest.approx(theirs["observer_bias"], abs=1e-3)
    assert plain.inconsistency == pytest.approx(theirs["observer_inconsistency"], abs=1e-3)
    assert plain.quality_ci95 == pytest.approx(theirs["quality_scores_ci95"][0], abs=1e-3)

    errors = {"sureal": [], "ours": []}
    for seed in range(5):
        x, truth = study(30, [4.0, -3.0, 0.0], [8.0, 8.0, 5.0], seed=10 + seed)
        theirs = sureal_result(mle, x)
        ours = fit_subject_model(x)
        assert min(theirs["observer_inconsistency"]) < 1e-3 and ours.inconsistency.min() > 1.0
        for key, quality in (("sureal", np.array(theirs["quality_scores"])), ("ours", ours.quality)):
            errors[key].append(np.sqrt(np.mean((quality - truth - np.mean(quality - truth)) ** 2)))
    assert np.mean(errors["ours"]) < np.mean(errors["sureal"])


def test_bt500_rejects_what_sureal_rejects_and_gives_its_mos() -> None:
    """8 careful raters and 1 or 2 who answer at random, 6 seeds: the same rejections and MOS as
    sureal's SubjrejMosModel every time; only random raters are rejected (BT.500's test misses
    some of them: it looks only at scores beyond 2 standard deviations)."""
    sureal_models = pytest.importorskip("sureal.subjective_model", reason="sureal is a dev dependency")
    caught = 0
    for seed in range(6):
        for random_raters in (1, 2):
            x, _ = study(60, [0.0] * 8, [6.0] * 8, seed=seed, random_raters=random_raters)
            theirs = sureal_result(sureal_models.SubjrejMosModel, x)
            result = SCREENINGS.create("bt500").screen(table(x))
            assert sorted(result.rejected) == [f"r{s:02d}" for s, out in enumerate(theirs["observer_rejected"]) if out]
            assert result.mos == pytest.approx(theirs["quality_scores"], abs=1e-9)
            assert set(result.rejected) <= {f"r{8 + k:02d}" for k in range(random_raters)}
            caught += len(result.rejected)
    assert caught >= 10  # of 18 random raters


def test_bt500_cannot_reject_with_three_raters_per_image_the_others_can() -> None:
    """(n - 1) / sqrt(n) < 2 for n < 6: no score of 3 is 2 standard deviations from their mean."""
    x, truth = study(50, [4.0, -4.0], [6.0, 6.0], seed=4, random_raters=1)
    assert SCREENINGS.create("bt500").screen(table(x)).rejected == {}
    for method in ("zscore", "mle"):
        result = SCREENINGS.create(method).screen(table(x))
        assert list(result.rejected) == ["r02"], method
        assert np.corrcoef(result.mos, truth)[0, 1] > 0.95
        assert result.n.tolist() == [2] * 50


def test_zscore_keeps_a_biased_careful_rater_and_rejects_straight_lining() -> None:
    x, _ = study(40, [15.0, 0.0, -5.0, 0.0], [5.0, 5.0, 5.0, 5.0], seed=5)
    x[:, 3] = 50.0  # the same score for every image
    result = SCREENINGS.create("zscore").screen(table(x))
    assert list(result.rejected) == ["r03"] and "same score" in result.rejected["r03"]


def test_gold_images_reject_a_rater_who_misses_them_before_the_method_runs() -> None:
    x, _ = study(20, [0.0, 0.0, 0.0], [3.0, 3.0, 3.0], seed=6)
    gold = {0: (x[0, :2].mean() - 10, x[0, :2].mean() + 10), 1: (x[1, :2].mean() - 10, x[1, :2].mean() + 10)}
    x[0, 2], x[1, 2] = gold[0][1] + 30, gold[1][0] - 30
    assert gold_rejections(table(x), gold) == {"r02": "missed 2 of 2 gold images"}
    for method in ("bt500", "zscore", "mle"):
        assert "r02" in SCREENINGS.create(method).screen(table(x), gold).rejected
    assert SCREENINGS.create("none").screen(table(x), gold).rejected == {}


def test_if_every_rater_would_be_rejected_none_is() -> None:
    x = np.array([[10.0, 90.0], [90.0, 10.0], [10.0, 90.0]])
    gold = {0: (40.0, 60.0), 1: (40.0, 60.0), 2: (40.0, 60.0)}
    result = SCREENINGS.create("zscore").screen(table(x), gold)
    assert result.rejected == {} and result.mos.tolist() == [50.0, 50.0, 50.0]


def test_vote_table_leaves_out_skipped_votes_and_keeps_the_item_order() -> None:
    votes = [Vote(7, "user:1", 40.0), Vote(3, "user:2", 60.0), Vote(3, "user:1", None), Vote(7, "user:2", 50.0)]
    built = VoteTable.from_votes(votes, items=[3, 7, 9])
    assert built.raters == ["user:1", "user:2"]
    assert np.array_equal(built.scores, np.array([[np.nan, 60.0], [40.0, 50.0], [np.nan, np.nan]]), equal_nan=True)
    assert built.counts.tolist() == [1, 2, 0]
