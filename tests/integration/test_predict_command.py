"""`mos-annotator predict`: ratings collected elsewhere, no server."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from ml_backend.config import Config
from ml_backend.evaluation.replay import load_dataset, run_trial, select
from ml_backend.features.extractor import FeatureExtractor
from tests.helpers import run_command, shared_path


def write_ratings(path: Path, rows: list[tuple]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "score", "rater"][: len(rows[0])])
        writer.writerows(rows)
    return path


def test_ratings_from_elsewhere_give_a_mos_csv(dataset, tmp_path: Path) -> None:
    root, tasks = dataset
    folder = root / "sample"
    names = [t["data"]["image_name"] for t in tasks]
    ratings = write_ratings(tmp_path / "ratings.csv", [
        (names[0], 80, "ann"), (names[0], 60, "bob"), (names[0], 70, "bob"),  # bob corrected himself
        (names[1], 20, "ann"), (names[2], 50, "ann")])
    out = tmp_path / "MOS.csv"
    result = run_command("predict", str(folder), "--ratings", str(ratings), "--out", str(out), "--details",
                         "--no-progress", env={"MOS_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(out)))
    assert sorted(r["Image_Name"] for r in rows) == sorted(names)
    by_name = {r["Image_Name"]: r for r in rows}
    assert (by_name[names[0]]["MOS"], by_name[names[0]]["N_Ratings"], by_name[names[0]]["Std"]) == ("75", "2", "7.0711")
    assert (by_name[names[1]]["Source"], by_name[names[1]]["Std"]) == ("human", "")
    predicted = [r for r in rows if r["Source"] == "predicted"]
    assert len(predicted) == len(names) - 3
    assert all(0 <= float(r["MOS"]) <= 100 and 0 <= float(r["Confidence"]) <= 1 for r in predicted)
    assert {r["Model_Version"] for r in predicted} == {"ridge-3-ratings"}


def test_bad_ratings_fail_in_one_line_naming_file_and_line(dataset, tmp_path: Path) -> None:
    root, tasks = dataset
    folder, name = root / "sample", tasks[0]["data"]["image_name"]
    cases = {
        "no score column": ([("image", "mos"), (name, "50")], "no 'score' column"),
        "not a number": ([("image", "score"), (name, "good")], "line 2: score='good' is not a number"),
        "off the scale": ([("image", "score"), (name, "150")], "line 2: score='150' is outside the scale 0-100"),
        "unknown image": ([("image", "score"), ("nope.png", "50")], "1 rated image(s) not found"),
    }
    out = tmp_path / "MOS.csv"
    for label, (rows, message) in cases.items():
        path = tmp_path / f"{label}.csv"
        with open(path, "w", newline="") as handle:
            csv.writer(handle).writerows(rows)
        result = run_command("predict", str(folder), "--ratings", str(path), "--out", str(out), "--no-progress")
        assert result.returncode == 1, label
        (line,) = result.stderr.strip().splitlines()
        assert message in line and (str(path) in line or label == "unknown image"), (label, line)
        assert not out.exists()


def test_predict_reproduces_the_evaluate_numbers_for_the_same_labels(tmp_path: Path) -> None:
    """On clive-dev, the default selector's 100 picks rated with their MOS: the predict command's
    SRCC on the other images is the evaluate command's for that trial."""
    folder = shared_path("data", "clive-dev")
    cache = Path(__file__).resolve().parents[2] / ".mos" / "features"  # shared with the evaluate runs
    dataset = load_dataset(folder)
    extracted = FeatureExtractor.from_config(Config(cache_dir=cache)).extract(dataset.paths, progress=False)
    assert not extracted.failed
    evaluated = run_command("evaluate", str(folder), "--budgets", "100", "--seeds", "1", "--strategies", "upfront",
                            "--out", str(tmp_path / "evaluation"), env={"MOS_CACHE_DIR": str(cache)})
    assert evaluated.returncode == 0, evaluated.stderr
    trials = json.loads((tmp_path / "evaluation" / "results.json").read_text())["trials"]
    (trial,) = [t for t in trials if t["budget"] == 100]
    assert trial["metrics"]["srcc"] == run_trial(extracted.features, dataset, "ted", "ridge", 100, 0).metrics["srcc"]

    picked = select(extracted.features, "ted", 100, 0)
    names = [p.relative_to(folder).as_posix() for p in dataset.paths]
    ratings = write_ratings(tmp_path / "ratings.csv", [(names[i], dataset.mos[i]) for i in picked])
    out = tmp_path / "MOS.csv"
    result = run_command("predict", str(folder), "--ratings", str(ratings), "--out", str(out), "--details",
                         "--no-progress", env={"MOS_CACHE_DIR": str(cache)})
    assert result.returncode == 0, result.stderr
    truth = dict(zip(names, dataset.mos, strict=True))
    predicted = [(float(r["MOS"]), truth[r["Image_Name"]]) for r in csv.DictReader(open(out))
                 if r["Source"] == "predicted"]
    assert len(predicted) == len(names) - 100
    ours = spearmanr(*np.array(predicted).T).statistic
    assert abs(ours - trial["metrics"]["srcc"]) < 1e-3, (ours, trial["metrics"]["srcc"])
