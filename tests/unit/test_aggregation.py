import pytest

from ml_backend.labelstudio.aggregation import RatingStats, aggregate_ratings
from ml_backend.labelstudio.label_config import parse_label_config

TAG = parse_label_config(
    '<View><Image name="image" value="$image"/>'
    '<Number name="mos" toName="image" min="0" max="100" step="1"/></View>'
)


def annotation(
    ann_id: int,
    rater: int | dict | None,
    value: float | None,
    *,
    cancelled: bool = False,
    created: str = "2026-01-01T10:00:00.000000Z",
    updated: str | None = None,
) -> dict:
    result = [] if value is None else [
        {"from_name": "mos", "to_name": "image", "type": "number", "value": {"number": value}}
    ]
    return {
        "id": ann_id, "result": result, "was_cancelled": cancelled, "completed_by": rater,
        "created_at": created, "updated_at": updated or created, "lead_time": 3.2,
    }


def task(task_id: int, *annotations: dict) -> dict:
    return {"id": task_id, "data": {"image": f"/data/local-files/?d=img{task_id}.png"},
            "annotations": list(annotations), "predictions": []}


def test_several_raters_are_averaged_with_sample_std_and_student_interval() -> None:
    stats = aggregate_ratings([task(1, annotation(1, 1, 60), annotation(2, 2, 80),
                                    annotation(3, 3, 70))], TAG)
    # t(0.975, 2) = 4.302653 (tables); half-width = t * s / sqrt(n) = 4.302653 * 10 / sqrt(3)
    assert stats == {1: RatingStats(mean=70.0, n=3, std=pytest.approx(10.0), ci95=pytest.approx(24.8414, abs=1e-3))}


def test_a_single_rating_has_zero_std() -> None:
    assert aggregate_ratings([task(5, annotation(1, 1, 42))], TAG) == {5: RatingStats(42.0, 1, None)}


def test_cancelled_and_empty_annotations_are_ignored() -> None:
    stats = aggregate_ratings([task(1, annotation(1, 1, 60), annotation(2, 2, 10, cancelled=True),
                                    annotation(3, 3, None))], TAG)
    assert stats[1] == RatingStats(60.0, 1, None)


def test_tasks_without_usable_ratings_are_absent() -> None:
    tasks = [
        task(1, annotation(1, 1, 55, cancelled=True)),
        task(2),
        {"id": 3, "data": {}},  # no annotations key at all
        task(4, annotation(2, 1, 30)),
    ]
    assert set(aggregate_ratings(tasks, TAG)) == {4}


def test_same_rater_twice_keeps_only_the_latest_update() -> None:
    first = annotation(10, 7, 20, created="2026-01-01T10:00:00Z", updated="2026-01-03T10:00:00Z")
    second = annotation(11, 7, 90, created="2026-01-02T10:00:00Z")  # created later, updated earlier
    other = annotation(12, 8, 40)
    stats = aggregate_ratings([task(1, second, first, other)], TAG)
    assert stats[1] == RatingStats(30.0, 2, pytest.approx(14.1421356), ci95=pytest.approx(12.7062 * 10, abs=1e-2))


def test_latest_is_decided_by_created_then_id_when_updates_tie() -> None:
    same = "2026-01-01T10:00:00Z"
    older = annotation(20, 7, 20, created="2026-01-01T09:00:00Z", updated=same)
    newer = annotation(21, 7, 60, created="2026-01-01T09:30:00Z", updated=same)
    assert aggregate_ratings([task(1, newer, older)], TAG)[1].mean == 60.0
    low_id, high_id = annotation(30, 7, 20), annotation(31, 7, 80)
    assert aggregate_ratings([task(1, high_id, low_id)], TAG)[1].mean == 80.0


def test_timestamps_in_mixed_iso_formats_compare_by_time() -> None:
    utc = annotation(1, 7, 20, created="2026-01-01T10:00:00Z")
    offset = annotation(2, 7, 80, created="2026-01-01T11:30:00+01:00")  # 10:30 UTC: later
    assert aggregate_ratings([task(1, offset, utc)], TAG)[1].mean == 80.0


def test_completed_by_as_int_and_as_dict_is_the_same_rater() -> None:
    old = annotation(1, 7, 20, created="2026-01-01T10:00:00Z")
    new = annotation(2, {"id": 7, "email": "rater@example.com"}, 60, created="2026-01-02T10:00:00Z")
    other = annotation(3, {"id": 8}, 100)
    stats = aggregate_ratings([task(1, old, new, other)], TAG)
    assert (stats[1].mean, stats[1].n) == (80.0, 2)


def test_annotations_without_an_author_count_separately() -> None:
    stats = aggregate_ratings([task(1, annotation(1, None, 20), annotation(2, None, 40))], TAG)
    assert (stats[1].mean, stats[1].n) == (30.0, 2)


def test_other_controls_in_the_result_do_not_count() -> None:
    ann = annotation(1, 1, None)
    ann["result"] = [{"from_name": "quality", "to_name": "image", "type": "rating",
                      "value": {"rating": 4}}]
    assert aggregate_ratings([task(1, ann)], TAG) == {}


def test_a_task_reader_parses_only_the_task_objects_it_has_not_seen(monkeypatch) -> None:
    """The backend's retrain after a rating gets the same task objects back but one: only that
    one is parsed again, and the votes equal a fresh read."""
    from ml_backend.labelstudio import aggregation
    from ml_backend.labelstudio.aggregation import TaskReader, screen_tasks, task_votes

    tasks = [task(i, annotation(10 + i, 1, 40 + i)) for i in range(5)]
    tasks[2]["data"].update(gold_min=1, gold_max=9)
    reader = TaskReader(TAG)
    reader(tasks)
    parsed = []
    monkeypatch.setattr(aggregation, "task_votes", lambda t, *a: parsed.append(t[0]["id"]) or task_votes(t, *a))
    again = tasks[:3] + [task(3, annotation(99, 2, 7))] + tasks[4:]
    votes, gold = reader(again)
    assert parsed == [3] and gold == {2: (1.0, 9.0)}
    assert votes == task_votes(again, TAG)
    fresh = screen_tasks(again, TAG, "none").ratings()
    assert screen_tasks(again, TAG, "none", reader=reader).ratings() == fresh and fresh[3].mean == 7
