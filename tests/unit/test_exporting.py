from __future__ import annotations

import io

from ml_backend.labelstudio.exporting import Predicted, build_rows, image_name, newest_predictions
from ml_backend.labelstudio.label_config import parse_label_config
from ml_backend.mos_csv import write_csv
from ml_backend.service.protocol import prediction as backend_prediction

TAG = parse_label_config(
    '<View><Image name="image" value="$image"/>'
    '<Number name="mos" toName="image" min="0" max="100" step="1"/></View>'
)


def number(value: float) -> list[dict]:
    return [{"from_name": "mos", "to_name": "image", "type": "number", "value": {"number": value}}]


def task(task_id: int, name: str, *annotations: dict) -> dict:
    return {"id": task_id, "data": {"image": f"/data/local-files/?d=set/{name}", "image_name": name},
            "annotations": list(annotations)}


def annotation(value: float, rater: int, cancelled: bool = False) -> dict:
    return {"id": rater * 100 + int(value), "result": [] if cancelled else number(value),
            "was_cancelled": cancelled, "completed_by": rater,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}


def prediction(pid: int, task_id: int, value: float, created: str, version: str) -> dict:
    return {"id": pid, "task": task_id, "result": number(value), "score": 0.5,
            "model_version": version, "created_at": created}


def test_rows_mix_human_means_and_newest_predictions_sorted_numerically() -> None:
    tasks = [
        task(1, "img10.png", annotation(80, 1), annotation(60, 2)),
        task(2, "img2.png"),
        task(3, "img1.png", annotation(55, 1, cancelled=True)),
        task(4, "img3.png"),
    ]
    predictions = [
        prediction(1, 2, 40, "2026-01-01T10:00:00", "knn-v1"),
        prediction(2, 2, 45, "2026-01-01T11:00:00", "knn-v2"),
        prediction(3, 3, 70, "2026-01-01T11:00:00", "knn-v2"),
        prediction(4, 1, 10, "2026-01-01T11:00:00", "knn-v2"),  # humans win over predictions
    ]
    rows, missing = build_rows(tasks, predictions, TAG)
    assert [r.image_name for r in rows] == ["img1.png", "img2.png", "img10.png"]
    assert missing == ["img3.png"]
    by_name = {r.image_name: r for r in rows}
    assert (by_name["img10.png"].mos, by_name["img10.png"].source, by_name["img10.png"].n_ratings) == (70, "human", 2)
    assert by_name["img10.png"].std is not None and abs(by_name["img10.png"].std - 14.1421) < 1e-3
    assert (by_name["img2.png"].mos, by_name["img2.png"].model_version) == (45, "knn-v2")
    assert (by_name["img1.png"].mos, by_name["img1.png"].source) == (70, "predicted")


def test_csv_columns() -> None:
    rows, _ = build_rows([task(1, "a.png", annotation(62.5, 1)), task(2, "b.png")],
                         [prediction(1, 2, 40, "2026", "knn-v3")], TAG)
    plain, detailed = io.StringIO(), io.StringIO()
    write_csv(rows, plain)
    write_csv(rows, detailed, details=True)
    assert plain.getvalue() == "Image_Name,MOS\na.png,62.5\nb.png,40\n"
    assert detailed.getvalue().splitlines() == [
        "Image_Name,MOS,Source,N_Ratings,Std,CI95,N_Rejected,Aggregation,Model_Version,Confidence",
        "a.png,62.5,human,1,,,0,none,,",  # one rating: its spread and interval are undefined, not 0
        "b.png,40,predicted,0,,,0,,knn-v3,0.5",
    ]


def test_predicted_mos_is_the_models_value_not_the_rounded_one() -> None:
    """The backend's prediction carries the unrounded value beside the one the tag accepts."""
    stored = {"id": 1, "task": 2, "created_at": "2026", **backend_prediction(TAG, 56.3721, 0.42, "ridge-v4")}
    assert stored["result"][0]["value"] == {"number": 56}
    rows, _ = build_rows([task(2, "b.png")], [stored], TAG)
    assert (rows[0].mos, rows[0].confidence, rows[0].model_version) == (56.3721, 0.42, "ridge-v4")
    outside = {"id": 2, "task": 2, "created_at": "2027", **backend_prediction(TAG, 104.2, 0.1, "ridge-v5")}
    assert build_rows([task(2, "b.png")], [outside], TAG)[0][0].mos == 100.0


def test_image_name_falls_back_to_url() -> None:
    assert image_name({"id": 1, "data": {"image": "/data/local-files/?d=x/y/img%207.png"}}, TAG) == "img 7.png"
    assert image_name({"id": 1, "data": {"image": "/abs/dir/p.jpg"}}, TAG) == "p.jpg"


def test_predictions_without_value_are_ignored() -> None:
    empty = {"id": 9, "task": 1, "result": [], "model_version": "knn-v9", "created_at": "2027"}
    assert newest_predictions([prediction(1, 1, 30, "2026", "knn-v1"), empty], TAG) == {1: Predicted(30, "knn-v1", 0.5)}
