from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml_backend.errors import DatasetError
from ml_backend.evaluation.metrics import all_metrics, fit_logistic, plcc, plcc_raw, rmse, srcc
from ml_backend.evaluation.replay import (
    Dataset,
    load_dataset,
    run_trial,
    select,
    simulated_labels,
    subsample_rows,
)
from ml_backend.evaluation.report import figure, markdown_table, plot, summarise
from tests.helpers import run_command


def write_labels(folder: Path, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "labels.csv").write_text(text)


def assert_same_metrics(got: dict[str, float], expected: dict[str, float]) -> None:
    """The same predictions give the same metrics: those computed on them directly to 1e-9, PLCC
    (through the logistic fit) to 0.05. On predictions as weak as the synthetic ones (PLCC 0.2-0.4)
    that fit can end on a different near-step curve when the predictions' last bits move (the
    matrix products' summation order): by up to a few hundredths, measured on such fits."""
    assert got.keys() == expected.keys()
    direct = [name for name in got if name != "plcc"]
    assert {name: got[name] for name in direct} == pytest.approx({name: expected[name] for name in direct}, rel=1e-9)
    assert got["plcc"] == pytest.approx(expected["plcc"], abs=0.05)


def synthetic(n: int = 120, dim: int = 40, seed: int = 0) -> tuple[np.ndarray, Dataset]:
    """Features with a linear quality signal; MOS on 0..100 with a per-image rater spread."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, dim))
    mos = np.clip(50 + 12 * (X[:, :5] @ np.array([1.0, 0.8, 0.6, 0.4, 0.2])), 0, 100)
    paths = [Path(f"img{i}.png") for i in range(n)]
    return X, Dataset(Path("."), paths, mos, np.full(n, 10.0))


def test_load_dataset_reads_labels_and_reports_bad_rows(tmp_path: Path) -> None:
    write_labels(tmp_path / "ok", "image,mos,mos_std\nimages/a.png,40.5,3\nimages/b.png,60,5\n")
    data = load_dataset(tmp_path / "ok")
    assert [p.name for p in data.paths] == ["a.png", "b.png"]
    assert data.mos.tolist() == [40.5, 60.0] and data.mos_std.tolist() == [3.0, 5.0]
    write_labels(tmp_path / "nostd", "image,mos\na.png,1\n")
    assert load_dataset(tmp_path / "nostd").mos_std is None
    with pytest.raises(DatasetError, match="labels.csv not found"):
        load_dataset(tmp_path / "missing")
    write_labels(tmp_path / "col", "file,mos\na.png,1\n")
    with pytest.raises(DatasetError, match="no 'image' column"):
        load_dataset(tmp_path / "col")
    write_labels(tmp_path / "bad", "image,mos\na.png,1\nb.png,high\n")
    with pytest.raises(DatasetError, match="line 3: mos='high' is not a number"):
        load_dataset(tmp_path / "bad")


def test_simulated_labels() -> None:
    _, data = synthetic()
    rng = np.random.default_rng(1)
    assert np.array_equal(simulated_labels(data, "oracle", rng), data.mos)
    single = simulated_labels(data, "single", rng)
    assert single.min() >= 0 and single.max() <= 100 and np.all(single == np.round(single))
    assert 5 < np.std(single - data.mos) < 15  # one rater's spread is mos_std = 10
    quiet = Dataset(data.root, data.paths, data.mos, np.zeros(len(data.mos)))
    assert np.array_equal(simulated_labels(quiet, "single", rng), np.round(data.mos))
    with pytest.raises(DatasetError, match="mos_std"):
        simulated_labels(Dataset(data.root, data.paths, data.mos, None), "single", rng)


@pytest.mark.parametrize("selector", ["random", "kmeans", "dbscan"])
def test_select_returns_budget_distinct_rows(selector: str) -> None:
    X, _ = synthetic()
    chosen = select(X, selector, 30, seed=0, exclude=range(10))
    assert len(chosen) == 30 == len(set(chosen.tolist())) and chosen.min() >= 10


def test_metrics() -> None:
    predicted = np.linspace(-5, 5, 50)
    truth = 100 / (1 + np.exp(-predicted))  # monotone in the prediction but not linear
    assert srcc(predicted, truth) == pytest.approx(1.0)
    assert plcc(predicted, truth) > plcc_raw(predicted, truth) + 0.01
    assert plcc(predicted, truth) == pytest.approx(1.0, abs=1e-3)
    assert np.allclose(fit_logistic(predicted, truth), truth, atol=1.0)
    assert rmse(truth + 3, truth) == pytest.approx(3.0)
    constant = all_metrics(np.full(50, 7.0), truth)
    assert constant["srcc"] == 0.0 and constant["plcc"] == 0.0 and constant["rmse"] > 0


def test_ridge_beats_knn_on_linear_signal_and_active_keeps_budget() -> None:
    X, data = synthetic()
    ridge = [run_trial(X, data, "random", "ridge", 40, seed) for seed in range(3)]
    knn = [run_trial(X, data, "random", "knn", 40, seed) for seed in range(3)]
    assert np.mean([t.metrics["srcc"] for t in ridge]) > 0.9
    assert np.mean([t.metrics["srcc"] for t in ridge]) > np.mean([t.metrics["srcc"] for t in knn]) + 0.1
    active = run_trial(X, data, "kmeans", "ridge", 40, 0, strategy="active")
    assert active.budget == 40 and active.strategy == "active"
    with pytest.raises(ValueError, match="unknown strategy"):
        run_trial(X, data, "random", "ridge", 40, 0, strategy="sometimes")


def test_stream_rates_the_representatives_then_the_least_confident_image() -> None:
    """The product's order: the selector's representatives, then after each refit the least
    confident image; with no more labels than representatives it is the up-front replay."""
    from ml_backend.prediction import PREDICTORS

    X, data = synthetic()
    assert (run_trial(X, data, "kmeans", "ridge", 15, 0, strategy="stream", representatives=20).metrics
            == run_trial(X, data, "kmeans", "ridge", 15, 0).metrics)
    picks = select(X, "kmeans", 20, 0)
    rest = np.setdiff1d(np.arange(len(X)), picks)
    _, confidence = PREDICTORS.create("ridge", {}).fit(X[picks], data.mos[picks]).predict_with_confidence(X[rest])
    labelled = np.append(picks, rest[np.argmin(confidence)])
    rest = np.setdiff1d(np.arange(len(X)), labelled)
    predicted = PREDICTORS.create("ridge", {}).fit(X[labelled], data.mos[labelled]).predict(X[rest])
    stream = run_trial(X, data, "kmeans", "ridge", 21, 0, strategy="stream", representatives=20)
    assert stream.budget == 21 and stream.metrics["srcc"] == pytest.approx(srcc(predicted, data.mos[rest]))


@pytest.mark.parametrize("held_out", [0, 30])
def test_one_stream_replay_scores_every_budget_as_one_replay_per_budget(held_out: int) -> None:
    """The grid replays each stream once to its largest budget; every budget's trial (the ones
    below the representatives, which are up-front picks, too) is the one its own replay gives."""
    from ml_backend.evaluation.replay import Grid, run_grid

    X, data = synthetic()
    budgets = [8, 10, 13, 25]
    grid = Grid(budgets=budgets, selectors=["kmeans"], predictors=["ridge"], labels=["single"], seeds=2, pool=80,
                held_out=held_out, strategies=["stream", "active"], representatives=10)
    trials = run_grid(X, data, grid)
    assert [(t.strategy, t.budget, t.seed) for t in trials] == [
        (s, b, k) for s in ("stream", "active") for b in budgets for k in (0, 1)]
    for trial in trials:
        drawn = np.random.default_rng([trial.seed, 2]).permutation(len(X))
        held, others = np.sort(drawn[:held_out]), np.sort(drawn[held_out:])
        pool = others[subsample_rows(len(others), 80 / len(others), trial.seed)]
        alone = run_trial(X[pool], data.subset(pool.tolist()), "kmeans", "ridge", trial.budget, trial.seed,
                          "single", trial.strategy, representatives=10,
                          held=(X[held], data.subset(held.tolist())) if held_out else None)
        assert_same_metrics(trial.metrics, alone.metrics)
        assert trial.metrics["srcc"] == alone.metrics["srcc"] and trial.confidence_srcc == alone.confidence_srcc
    with pytest.raises(ValueError, match="a budget of 120 labels leaves none of the 120 images unrated"):
        run_trial(X, data, "kmeans", "ridge", 120, 0, strategy="stream")


def test_an_interrupted_grid_resumes_from_its_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each finished replay is kept; a second run with the same inputs replays only the rest and
    gives the trials of a run never interrupted. Other inputs, or a torn last line, are not trusted."""
    from ml_backend.evaluation import replay
    from ml_backend.evaluation.journal import Journal
    from ml_backend.evaluation.replay import Grid, run_grid

    X, data = synthetic()
    grid = Grid(budgets=[15, 30], selectors=["kmeans"], predictors=["ridge", "knn"], seeds=3, pool=80,
                strategies=["stream"], representatives=10)
    digest = grid.fingerprint(X, data)
    path = tmp_path / "out" / "journal.jsonl"

    def stop_after(n: int) -> Callable[[Iterable[Any]], Iterator[Any]]:  # the progress hook: Ctrl-C after n
        def progress(items: Iterable[Any]) -> Iterator[Any]:
            for i, item in enumerate(items):
                if i == n:
                    raise KeyboardInterrupt
                yield item
        return progress

    journal = Journal(path, digest).open()
    with pytest.raises(KeyboardInterrupt):
        run_grid(X, data, grid, progress=stop_after(4), journal=journal)
    journal.close(finished=False)
    assert len(path.read_text().splitlines()) == 1 + 4
    replayed = []
    original = replay.run_trials
    monkeypatch.setattr(replay, "run_trials", lambda *a, **k: replayed.append(a[2:6]) or original(*a, **k))
    journal = Journal(path, digest).open()
    assert len(journal.done) == 4
    resumed = run_grid(X, data, grid, journal=journal)
    journal.close(finished=True)
    assert len(replayed) == 2 * 3 - 4 and not path.exists()
    uninterrupted = run_grid(X, data, grid)
    assert [(t.predictor, t.budget, t.seed) for t in resumed] == [
        (t.predictor, t.budget, t.seed) for t in uninterrupted]
    for a, b in zip(resumed, uninterrupted, strict=True):
        assert_same_metrics(a.metrics, b.metrics)
        assert a.metrics["srcc"] == b.metrics["srcc"]
    # Another grid (or other features) has another fingerprint: its journal starts over.
    assert Grid(**{**grid.__dict__, "seeds": 4}).fingerprint(X, data) != digest
    assert grid.fingerprint(X + 1e-9, data) != digest
    path.write_text(json.dumps({"fingerprint": digest}) + '\n{"key": ["oracle", "stream", "kmeans", "ridge", 0], "tri')
    journal = Journal(path, digest).open()
    assert journal.done == {} and not journal.restarted  # the torn line is dropped, the header kept
    journal.record(("oracle", "stream", "kmeans", "ridge", 0), resumed[:1])
    journal.close(finished=False)
    again = Journal(path, digest).open()
    assert set(again.done) == {("oracle", "stream", "kmeans", "ridge", 0)}
    again.close(finished=False)
    other = Journal(path, "another digest").open()
    assert other.done == {} and other.restarted
    other.close(finished=False)
    path.write_text(json.dumps({"fingerprint": digest}) + '\n{"key": 3}\n["a list"]\n')
    odd = Journal(path, digest).open()  # well-formed JSON that is not an entry is skipped too
    assert odd.done == {} and not odd.restarted
    odd.close(finished=False)
    path.write_bytes(b"\xff\xfe not a journal at all")
    binary = Journal(path, digest).open()
    assert binary.done == {} and binary.restarted
    binary.close(finished=True)
    assert not path.exists()
    never = Journal(tmp_path / "new" / "journal.jsonl", digest).open()  # nothing finished: nothing written
    never.close(finished=False)
    assert not (tmp_path / "new").exists()


def test_summary_table_and_plot(tmp_path: Path) -> None:
    X, data = synthetic()
    trials = [run_trial(X, data, "random", p, b, s) for p in ("ridge", "knn") for b in (20, 40) for s in (0, 1)]
    summary = summarise(trials)
    assert len(summary) == 4 and all(row["seeds"] == 2 for row in summary)
    row = next(r for r in summary if r["predictor"] == "ridge" and r["budget"] == 40)
    values = [t.metrics["srcc"] for t in trials if t.predictor == "ridge" and t.budget == 40]
    assert row["srcc"] == pytest.approx(np.mean(values)) and row["srcc_std"] == pytest.approx(np.std(values))
    table = markdown_table(summary)
    assert table.count("\n") == 5 and "| oracle | random | ridge | upfront | 40 |" in table
    plot(summary, tmp_path / "srcc.png", "test")
    assert (tmp_path / "srcc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.pyplot as plt

    drawn = figure(summary, "test")
    legend = [text.get_text() for text in drawn.axes[0].get_legend().get_texts()]
    plt.close(drawn)
    assert legend == ["knn / random / oracle / upfront", "ridge / random / oracle / upfront",
                      "band: mean ± 1 standard deviation over 2 seeds"]


def test_evaluate_command_on_generated_images(tmp_path: Path) -> None:
    from ml_backend.dev.sample_dataset import make_sample_dataset

    rows = make_sample_dataset(tmp_path / "data", scenes=2)
    with open(tmp_path / "data" / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mos", "mos_std"])
        for row in rows:  # a proxy score from the distortion level, enough to drive the command
            writer.writerow([row.name, 90 - 18 * row.level, 5])
    out = tmp_path / "out"
    result = run_command(
        "evaluate", str(tmp_path / "data"), "--out", str(out),
        "--budgets", "8", "--seeds", "2", "--selectors", "random", "--predictors", "ridge", "knn",
        "--labels", "oracle", "single", "--cache-dir", str(tmp_path / "cache"), "--subsample", "0.9",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "results.json").read_text())
    assert report["setup"]["images"] == len(rows) and report["setup"]["subsample"] == 0.9
    assert len(report["trials"]) == 2 * 2 * 2 and len(report["summary"]) == 4
    assert "| single | random | ridge | stream | 8 |" in (out / "results.md").read_text()
    assert (out / "srcc.png").exists()
    assert not (out / "replays-in-progress.jsonl").exists()  # finished: nothing left to resume
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / "replays-in-progress.jsonl").write_text('{"fingerprint": "of another run"}\n')
    held = run_command(
        "evaluate", str(tmp_path / "data"), "--out", str(tmp_path / "held"), "--budgets", "6", "--seeds", "2",
        "--selectors", "random", "--cache-dir", str(tmp_path / "cache"), "--held-out", "5",
    )
    assert held.returncode == 0, held.stderr
    assert "was written for other inputs: starting over" in held.stderr
    (tmp_path / "a-file").write_text("")
    refused = run_command("evaluate", str(tmp_path / "data"), "--out", str(tmp_path / "a-file"))
    assert refused.returncode == 1 and f"--out {tmp_path / 'a-file'} is a file, not a folder" in refused.stderr
    assert not (tmp_path / "held" / "replays-in-progress.jsonl").exists()
    report = json.loads((tmp_path / "held" / "results.json").read_text())
    assert report["setup"]["held_out"] == 5 and len(report["trials"]) == 2
    assert "metrics on 5 held-out images per seed that no trial sees or rates" in (
        tmp_path / "held" / "results.md").read_text()


def test_subsample_rows_are_a_seeded_sorted_subset_per_seed() -> None:
    np.testing.assert_array_equal(subsample_rows(7, 1.0, 3), np.arange(7))
    a, b = subsample_rows(100, 0.8, 0), subsample_rows(100, 0.8, 1)
    assert len(a) == 80 and len(set(a.tolist())) == 80 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, subsample_rows(100, 0.8, 0))
    assert not np.array_equal(a, b)
    assert len(subsample_rows(3, 0.01, 0)) == 1


def test_evaluate_command_rejects_a_bad_subsample(tmp_path: Path) -> None:
    result = run_command("evaluate", str(tmp_path), "--subsample", "1.5", timeout=120)
    assert result.returncode == 1 and "--subsample must be in (0, 1], got 1.5" in result.stderr


def test_evaluate_command_rejects_a_bad_held_out(tmp_path: Path) -> None:
    result = run_command("evaluate", str(tmp_path), "--held-out", "2", timeout=120)
    assert result.returncode == 1 and "--held-out must be at least 3 images" in result.stderr
    result = run_command("evaluate", str(tmp_path), "--held-out", "5", "--rater-budgets", "100", timeout=120)
    assert result.returncode == 1 and "--held-out does not apply to --rater-budgets" in result.stderr
    result = run_command("evaluate", str(tmp_path), "--rater-budgets", "100", "--selectors", "kmeans", "--labels",
                         "single", timeout=120)  # the study replays the product's default: they would be ignored
    assert result.returncode == 1 and "--selectors, --labels do not apply to --rater-budgets" in result.stderr


def test_evaluate_command_refuses_an_empty_scale_and_warns_of_skipped_budgets(tmp_path: Path) -> None:
    from ml_backend.dev.sample_dataset import make_sample_dataset

    rows = make_sample_dataset(tmp_path / "data", scenes=1)  # 13 images
    write_labels(tmp_path / "data", "image,mos\n" + "".join(f"{r.name},{90 - 18 * r.level}\n" for r in rows))
    out, cache = tmp_path / "out", tmp_path / "cache"
    common = ("evaluate", str(tmp_path / "data"), "--out", str(out), "--cache-dir", str(cache))
    refused = run_command(*common, "--scale", "5", "1", timeout=120)
    assert refused.returncode == 1 and "error: --scale MIN MAX: MIN must be below MAX, got 5 1" in refused.stderr
    assert not out.exists() and not cache.exists()
    result = run_command(*common, "--budgets", "4", "13", "20", "--seeds", "1", "--selectors", "random",
                         "--strategies", "upfront", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "warning: --budgets 13 20 skipped: a replay has 13 images" in result.stderr
    assert [t["budget"] for t in json.loads((out / "results.json").read_text())["trials"]] == [4]


def test_simulated_raters_without_a_spread_are_refused_before_any_work(tmp_path: Path) -> None:
    """A labels file without mos_std cannot drive simulated raters: the command says which file,
    before extracting any feature or writing anything to --out."""
    write_labels(tmp_path / "data", "image,mos\nmissing-a.png,40\nmissing-b.png,60\n")
    (tmp_path / "data" / "labels.csv").rename(tmp_path / "data" / "lab.csv")
    for option, what in ((["--labels", "single"], "single-rater labels"),
                         (["--rater-budgets", "10"], "simulated raters")):
        result = run_command("evaluate", str(tmp_path / "data"), "--labels-csv", "lab.csv", "--out",
                             str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"), *option, timeout=120)
        assert result.returncode == 1, result.stderr
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: {tmp_path / 'data' / 'lab.csv'}: {what} need a 'mos_std' column")
        assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_held_out_images_are_never_rated_and_score_every_trial() -> None:
    """Each seed sets its own images aside before the pool is drawn; every strategy is scored on
    them, so orders are compared on the same images (not on the ones each left unrated)."""
    from ml_backend.evaluation.replay import Grid, run_grid
    from ml_backend.prediction import PREDICTORS

    X, data = synthetic()
    grid = Grid(budgets=[30], selectors=["kmeans"], predictors=["ridge"], seeds=2, pool=60, held_out=40,
                strategies=["stream", "upfront"], representatives=10)
    trials = {(t.strategy, t.seed): t for t in run_grid(X, data, grid)}
    assert set(trials) == {(s, k) for s in ("stream", "upfront") for k in (0, 1)}
    for seed in (0, 1):
        drawn = np.random.default_rng([seed, 2]).permutation(len(X))
        held, others = np.sort(drawn[:40]), np.sort(drawn[40:])
        pool = others[subsample_rows(len(others), 60 / len(others), seed)]
        assert len(pool) == 60 and not set(pool.tolist()) & set(held.tolist())
        picks = pool[select(X[pool], "kmeans", 30, seed)]  # up front, by hand, scored on the held-out images
        predicted = PREDICTORS.create("ridge", {}).fit(X[picks], data.mos[picks]).predict(X[held])
        assert trials[("upfront", seed)].metrics["srcc"] == pytest.approx(srcc(predicted, data.mos[held]))
        stream = run_trial(X[pool], data.subset(pool.tolist()), "kmeans", "ridge", 30, seed, strategy="stream",
                           representatives=10, held=(X[held], data.subset(held.tolist())))
        assert trials[("stream", seed)].metrics == stream.metrics
    assert trials[("upfront", 0)].metrics != trials[("upfront", 1)].metrics  # each seed its own split
    with pytest.raises(ValueError, match="--pool 100 beside --held-out 40 is larger than the dataset"):
        run_grid(X, data, Grid(budgets=[30], selectors=["random"], predictors=["ridge"], pool=100, held_out=40))
    with pytest.raises(ValueError, match="--held-out 119 leaves fewer than 2"):
        run_grid(X, data, Grid(budgets=[30], selectors=["random"], predictors=["ridge"], held_out=119))


def test_class_metrics_catch_a_model_that_predicts_the_middle() -> None:
    from ml_backend.evaluation.metrics import class_metrics, terciles

    mos = np.linspace(0, 100, 300)
    thresholds = terciles(mos)
    assert thresholds == pytest.approx((100 / 3, 200 / 3), abs=0.5)
    perfect = class_metrics(mos, mos, thresholds)
    assert perfect["f1_3class"] == pytest.approx(1.0) and perfect["rmse_bad"] == 0.0
    middle = class_metrics(np.full_like(mos, 50.0), mos, thresholds)
    assert middle["f1_3class"] < 0.2  # everything "normal": one class of three found, partly
    assert middle["rmse_bad"] > 25 and middle["rmse_good"] > 25 and middle["rmse_normal"] < 10


def test_default_rows_are_marked_and_others_paired_with_them(tmp_path: Path) -> None:
    from ml_backend.evaluation.replay import Grid, run_grid
    from ml_backend.evaluation.report import paired, write_report

    X, data = synthetic()
    grid = Grid(budgets=[30], selectors=["random"], predictors=["ridge", "knn"], seeds=4, pool=100,
                default=("random", "ridge", "upfront"))
    trials = run_grid(X, data, grid)
    assert all(len(set(t.metrics) & {"f1_3class", "rmse_bad", "rmse_normal", "rmse_good"}) == 4 for t in trials)
    summary = summarise(trials, grid.default)
    assert {(r["predictor"], r["default"]) for r in summary} == {("ridge", True), ("knn", False)}
    (row,) = paired(trials, grid.default)
    by_seed = {(t.predictor, t.seed): t.metrics["srcc"] for t in trials}
    diffs = [by_seed[("knn", s)] - by_seed[("ridge", s)] for s in range(4)]
    assert row["difference"] == pytest.approx(np.mean(diffs))
    assert row["se"] == pytest.approx(np.std(diffs, ddof=1) / 2)
    assert row["verdict"] == "loss"  # knn trails ridge on a linear signal by far more than 2 SE
    # On features the product does not use (another backbone), nothing is its default; the pairs stay.
    write_report(tmp_path, trials, {}, "title", "description", grid.default, product_default=False)
    report = json.loads((tmp_path / "results.json").read_text())
    assert not any(r["default"] for r in report["summary"]) and report["paired"] == [row]
    # Other orders pair with the default order, and without it each order with its own default pair.
    orders = run_grid(X, data, Grid(budgets=[30], selectors=["random"], predictors=["ridge"], seeds=3, pool=100,
                                    strategies=["stream", "upfront"], representatives=10))
    by_order = {(t.strategy, t.seed): t.metrics["srcc"] for t in orders}
    (row,) = paired(orders, ("random", "ridge", "stream"))
    assert row["strategy"] == "upfront" and row["against"] == "random + ridge, stream"
    assert row["difference"] == pytest.approx(np.mean([by_order[("upfront", s)] - by_order[("stream", s)]
                                                       for s in range(3)]))
    assert [r["default"] for r in summarise(orders, ("random", "ridge", "stream"))] == [True, False]
    assert paired(orders, ("random", "ridge", "active")) == []  # each order's only pair is itself
    with pytest.raises(ValueError, match="--pool 500 is larger than the dataset"):
        run_grid(X, data, Grid(budgets=[30], selectors=["random"], predictors=["ridge"], pool=500))


def test_a_grid_that_cannot_run_fails_before_any_work() -> None:
    """No seed, a budget of no label, or budgets that leave no image to score are refused at once;
    budgets too large for the replays beside usable ones are skipped."""
    from ml_backend.evaluation.replay import Grid, run_grid

    X, data = synthetic()  # 120 images
    base = {"budgets": [30], "selectors": ["random"], "predictors": ["ridge"]}
    with pytest.raises(ValueError, match="--seeds must be at least 1, got 0"):
        Grid(**{**base, "seeds": 0}).check()
    with pytest.raises(ValueError, match=r"--budgets must be at least 1 label each, got \[30, 0\]"):
        Grid(**{**base, "budgets": [30, 0]}).check()
    held = Grid(**{**base, "budgets": [20, 100, 110], "held_out": 10})
    assert held.replay_images(120) == 110 and held.usable_budgets(120) == [20, 100]
    assert Grid(**{**base, "pool": 50}).replay_images(120) == 50
    assert Grid(**{**base, "subsample": 0.5, "held_out": 20}).replay_images(120) == 50
    with pytest.raises(ValueError, match="--budgets 50 60: a replay has 50 images, and every budget leaves none"):
        run_grid(X, data, Grid(**{**base, "budgets": [50, 60], "pool": 50}))
    trials = run_grid(X, data, Grid(**{**base, "budgets": [10, 120], "seeds": 2}))
    assert [t.budget for t in trials] == [10, 10]


def test_rater_budget_designs_spend_the_budget_and_pair_with_one_rater() -> None:
    """k raters per image rate budget / k images, mixed spends 60 % on first ratings; the
    simulated raters scatter by mos_std (their mean of 3 by mos_std / sqrt 3); the difference with
    one rater per image is paired by seed."""
    from ml_backend.evaluation.rater_budget import BudgetStudy, run_budget_study, simulated_ratings, summarise_budget

    X, data = synthetic(n=90)
    data = Dataset(data.root, data.paths, np.full(90, 50.0), np.full(90, 12.0))
    ratings = simulated_ratings(data, np.arange(90), 3, np.random.default_rng(0))
    assert np.std(ratings - 50) == pytest.approx(12, rel=0.1)
    assert np.std(ratings.mean(axis=1) - 50) == pytest.approx(12 / np.sqrt(3), rel=0.2)
    X, data = synthetic(n=90)
    trials = run_budget_study(X, data, BudgetStudy([90], seeds=3, selector="random", predictor="ridge"))
    by = {(t.design, t.seed): t for t in trials}
    spent = {d: (by[(d, 0)].images_rated, by[(d, 0)].ratings_used) for d in ("1", "3", "5")}
    assert spent == {"1": (90, 90), "3": (30, 90), "5": (18, 90)}
    assert all(t.ratings_used <= 90 for t in trials) and by[("mixed", 0)].images_rated == 54
    three = next(r for r in summarise_budget(trials) if r["design"] == "3")
    differences = [by[("3", s)].metrics["srcc"] - by[("1", s)].metrics["srcc"] for s in range(3)]
    assert three["delta_srcc"] == pytest.approx(np.mean(differences))
    assert three["delta_se"] == pytest.approx(np.std(differences, ddof=1) / np.sqrt(3))


def test_an_interrupted_rater_budget_study_resumes_from_its_journal(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each finished trial is kept; the same study resumes with only the rest, and gives the
    trials of a study never interrupted; another study starts its journal over."""
    from ml_backend.evaluation import rater_budget
    from ml_backend.evaluation.journal import Journal
    from ml_backend.evaluation.rater_budget import BudgetStudy, run_budget_study

    X, data = synthetic(n=90)
    study = BudgetStudy([20, 40], seeds=2, selector="kmeans", predictor="ridge", pool=70)
    digest = study.fingerprint(X, data)
    path = tmp_path / "budget.jsonl"

    def stop_after_five(items: Iterable[Any]) -> Iterator[Any]:  # the progress hook: Ctrl-C after 5 trials
        for i, item in enumerate(items):
            if i == 5:
                raise KeyboardInterrupt
            yield item

    journal = Journal(path, digest).open()
    with pytest.raises(KeyboardInterrupt):
        run_budget_study(X, data, study, progress=stop_after_five, journal=journal)
    journal.close(finished=False)
    ran = []
    original = rater_budget.run_budget_trial
    monkeypatch.setattr(rater_budget, "run_budget_trial", lambda *a, **k: ran.append(a[2:5]) or original(*a, **k))
    journal = Journal(path, digest).open()
    resumed = run_budget_study(X, data, study, journal=journal)
    journal.close(finished=True)
    assert len(ran) == 2 * 4 * 2 - 5 and not path.exists()
    assert resumed == run_budget_study(X, data, study)
    assert BudgetStudy([20, 40], seeds=2, selector="kmeans", predictor="ridge", pool=71).fingerprint(X, data) != digest
    assert study.fingerprint(X + 1e-9, data) != digest
    with pytest.raises(ValueError, match="rater budgets must be at least 2 ratings"):
        BudgetStudy([1], seeds=1, selector="kmeans", predictor="ridge").check(data)


def test_evaluate_rater_budgets_writes_the_table_and_plot(tmp_path: Path) -> None:
    from ml_backend.dev.sample_dataset import make_sample_dataset

    rows = make_sample_dataset(tmp_path / "data", scenes=2)
    with open(tmp_path / "data" / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mos", "mos_std"])
        for row in rows:
            writer.writerow([row.name, 90 - 18 * row.level, 15])
    out = tmp_path / "out"
    result = run_command("evaluate", str(tmp_path / "data"), "--out", str(out), "--rater-budgets", "12", "30",
                         "--seeds", "2", "--cache-dir", str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "budget.json").read_text())
    assert len(report["trials"]) == 2 * 4 * 2 and set(report["winners"]) == {"12", "30"}
    assert "| 30 | 3 raters per image | 10 | 30 |" in (out / "budget.md").read_text()
    assert (out / "budget.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "budget-trials-in-progress.jsonl").exists() and report["setup"]["resumed_trials"] == 0
